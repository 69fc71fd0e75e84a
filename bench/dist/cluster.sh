#!/usr/bin/env bash
# An emulated cluster on one machine: N network namespaces joined through a bridge, each link shaped
# by tc tbf, and mpirun across them with Open MPI's TCP transport only (no shared memory), so every
# byte of an allreduce crosses a shaped link.
#
#   cluster.sh up N [--rate R]        make the namespaces; prints the cluster id (state in $FLC_STATE)
#   cluster.sh down                   remove the cluster recorded in $FLC_STATE
#   cluster.sh down --all             remove every namespace whose name starts with "flc-"
#   cluster.sh run N [--rate R] [--np P] -- CMD...
#                                     up, mpirun -np P (default N) CMD across the namespaces, down;
#                                     Ctrl-C or any exit removes the cluster too (trap)
#   cluster.sh check                  exit 0 if namespaces can be made here, else 77 with the reason
#   R: 1gbit | 10gbit | any tc rate (default 10gbit)
#
# Layout (id = the pid of `up`/`run`): namespaces flc-<id>-0 .. flc-<id>-(N-1) for the ranks and
# flc-<id>-br holding a bridge; rank i's namespace has one veth "flc0" with 10.213.<k>.(i+1)/24
# (k = id mod 250), whose peer is a port of the bridge. The subnet exists only inside these
# namespaces: the host's own interfaces and routes are never touched, no namespace has a route
# anywhere else, so traffic can only go between the namespaces this script made.
# Shaping: a tbf qdisc on both ends of every veth (egress of the rank and egress of its bridge
# port), so each rank's link carries R each way. This kernel has no sch_netem, so no delay or loss
# is added: latency is the veth's (microseconds), bandwidth is the only thing emulated.
#
# mpirun runs inside flc-<id>-0; a hostfile names one host per namespace, and Open MPI's rsh
# launcher (plm_rsh_agent) is a small script that starts each host's daemon with
# `ip netns exec <namespace>`. Options: --mca btl tcp,self (no vader shared memory) and
# btl_tcp_if_include / oob_tcp_if_include = the cluster subnet; TCP keepalives on the daemons'
# connections after 10 s idle, 3 probes 5 s apart, so mpirun notices a host whose link went down
# (`ip -n flc-<id>-<i> link set flc0 down`) in about 25 s instead of the default 8 minutes.
#
# Privileges: root, or CAP_NET_ADMIN + CAP_SYS_ADMIN (ip netns add mounts under /run/netns), and the
# iproute2 tools ip and tc. `check` says which is missing; tests skip (exit 77) when it fails.
set -euo pipefail

FLC_STATE=${FLC_STATE:-/tmp/flc-cluster}
HERE=$(cd "$(dirname "$0")" && pwd)

die() { echo "cluster.sh: $*" >&2; exit 1; }

usage() { sed -n '2,34p' "$0" | sed 's/^# \{0,1\}//'; }

check() {
    command -v ip >/dev/null || { echo "cluster.sh: 'ip' (iproute2) not found"; return 77; }
    command -v tc >/dev/null || { echo "cluster.sh: 'tc' (iproute2) not found"; return 77; }
    local probe="flc-probe-$$"
    if ! ip netns add "$probe" 2>/dev/null; then
        echo "cluster.sh: cannot create network namespaces (needs root or CAP_NET_ADMIN + CAP_SYS_ADMIN)"
        return 77
    fi
    local ok=0
    ip -n "$probe" link add flcp0 type veth peer name flcp1 2>/dev/null || ok=1
    [ $ok -eq 0 ] && { tc -n "$probe" qdisc add dev flcp0 root tbf rate 1gbit burst 256kb latency 50ms 2>/dev/null || ok=2; }
    ip netns del "$probe" 2>/dev/null || true
    [ $ok -eq 1 ] && { echo "cluster.sh: cannot create veth pairs in a namespace"; return 77; }
    [ $ok -eq 2 ] && { echo "cluster.sh: tc tbf is not available (kernel module sch_tbf)"; return 77; }
    return 0
}

# tbf: burst must hold at least rate/HZ; 1 MB is enough up to 10 Gbit/s at HZ 1000.
shape() { tc -n "$1" qdisc replace dev "$2" root tbf rate "$3" burst 1mb latency 100ms; }

up() {
    local n=$1 rate=$2 id=$3
    [ "$n" -ge 1 ] && [ "$n" -le 64 ] || die "N must be in [1, 64], got $n"
    [ -e "$FLC_STATE/id" ] && die "a cluster is already up ($FLC_STATE, id $(cat "$FLC_STATE/id")): run 'cluster.sh down' first"
    local k=$((id % 250)) br="flc-$id-br"
    mkdir -p "$FLC_STATE"
    echo "$id" >"$FLC_STATE/id"
    echo "10.213.$k.0/24" >"$FLC_STATE/subnet"
    : >"$FLC_STATE/hostfile"
    ip netns add "$br"
    echo "$br" >"$FLC_STATE/namespaces"
    ip -n "$br" link add flcbr type bridge
    ip -n "$br" link set flcbr up
    ip -n "$br" link set lo up
    for ((i = 0; i < n; i++)); do
        local ns="flc-$id-$i"
        ip netns add "$ns"
        echo "$ns" >>"$FLC_STATE/namespaces"
        # create the pair inside the bridge namespace (no host interface ever exists), move one end
        ip -n "$br" link add "flcp$i" type veth peer name flc0 netns "$ns"
        ip -n "$br" link set "flcp$i" master flcbr
        ip -n "$br" link set "flcp$i" up
        ip -n "$ns" link set lo up
        ip -n "$ns" addr add "10.213.$k.$((i + 1))/24" dev flc0
        ip -n "$ns" link set flc0 up
        shape "$ns" flc0 "$rate"
        shape "$br" "flcp$i" "$rate"
        echo "$ns slots=1" >>"$FLC_STATE/hostfile"
    done
    # the rsh agent: `agent HOST CMD...` -> run CMD in HOST's namespace (host = namespace name)
    cat >"$FLC_STATE/agent" <<'AGENT'
#!/bin/sh
host=$1; shift
case "$host" in flc-*) ;; *) echo "flc agent: refusing host '$host'" >&2; exit 1;; esac
exec ip netns exec "$host" /bin/sh -c "$*"
AGENT
    chmod +x "$FLC_STATE/agent"
    echo "$rate" >"$FLC_STATE/rate"
    echo "$n" >"$FLC_STATE/size"
    echo "$id"
}

# process $1 exists and is not a zombie (kill -0 succeeds on an unreaped child)
running() {
    local st
    st=$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) || return 1
    [ -n "$st" ] && [ "$st" != Z ]
}

# pids of the processes in namespace $1 other than Open MPI's launch machinery
ns_user_pids() {
    local p c
    for p in $(ip netns pids "$1" 2>/dev/null); do
        c=$(cat "/proc/$p/comm" 2>/dev/null) || continue
        case "$c" in orted|mpirun|ip|sh|bash|timeout|sleep) ;; *) echo "$p" ;; esac
    done
}

down() {
    if [ "${1:-}" = "--all" ]; then
        for ns in $(ip netns list | awk '{print $1}' | grep '^flc-' || true); do ip netns del "$ns" 2>/dev/null || true; done
        rm -rf "$FLC_STATE"
        return 0
    fi
    [ -f "$FLC_STATE/namespaces" ] || { rm -rf "$FLC_STATE"; return 0; }
    # processes still inside (a stuck mpirun or rank) would keep a deleted namespace alive: end them.
    # Deleting a namespace removes its veth ends (and so their peers).
    while read -r ns; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
        ip netns del "$ns" 2>/dev/null || true
    done <"$FLC_STATE/namespaces"
    rm -rf "$FLC_STATE"
}

run() {
    local n=$1 rate=$2 np=$3; shift 3
    [ $# -gt 0 ] || die "run needs a command after --"
    local id=$$
    trap 'down' EXIT
    trap 'exit 130' INT TERM
    up "$n" "$rate" "$id" >/dev/null
    local subnet
    subnet=$(cat "$FLC_STATE/subnet")
    # FLC_MASTER_ADDR: rank 0's address, for peers that rendezvous by address (PyTorch gloo)
    export FLC_MASTER_ADDR="${subnet%.0/24}.1" FLC_IFNAME=flc0
    local envs=(-x PATH -x FLC_MASTER_ADDR -x FLC_IFNAME) v
    for v in LD_LIBRARY_PATH OPENBLAS_NUM_THREADS $(env | grep -o '^FL_[A-Z_]*' || true); do
        [ -n "${!v:-}" ] && envs+=(-x "$v")
    done
    # mpirun in rank 0's namespace; every daemon (rank 0's too) is started by the agent
    ip netns exec "flc-$id-0" mpirun --allow-run-as-root --oversubscribe -np "$np" \
        --hostfile "$FLC_STATE/hostfile" --map-by node \
        --mca plm_rsh_agent "$FLC_STATE/agent" --mca plm_rsh_no_tree_spawn 1 \
        --mca btl tcp,self --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet" \
        --mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 5 --mca oob_tcp_keepalive_probes 3 \
        --mca orte_keep_fqdn_hostnames 1 "${envs[@]}" "$@" &
    local mp=$! used=$((np < n ? np : n)) seen=0 gone=0 alive i rc
    # mpirun waits forever for a daemon whose link is down, even after MPI_Abort: once every
    # namespace has had a rank and some namespace has none left, give mpirun FLC_GRACE seconds
    # (default 10) to finish, then end it.
    while running "$mp"; do
        sleep 1
        alive=0
        for ((i = 0; i < used; i++)); do [ -n "$(ns_user_pids "flc-$id-$i")" ] && alive=$((alive + 1)); done
        if [ "$alive" -eq "$used" ]; then
            seen=1 gone=0
        elif [ "$seen" -eq 1 ]; then
            [ "$gone" -eq 0 ] && gone=$SECONDS
            if [ $((SECONDS - gone)) -ge "${FLC_GRACE:-10}" ] && running "$mp"; then
                echo "cluster.sh: ranks ended but mpirun did not exit within ${FLC_GRACE:-10} s (a host unreachable?): ending it" >&2
                kill -9 "$mp" 2>/dev/null || true
            fi
        fi
    done
    rc=0
    wait "$mp" || rc=$?
    return "$rc"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
up|run)
    [ $# -ge 1 ] || die "$cmd needs N"
    n=$1; shift
    rate=10gbit np=$n
    while [ $# -gt 0 ] && [ "$1" != "--" ]; do
        case "$1" in
        --rate) rate=$2; shift 2 ;;
        --np) np=$2; shift 2 ;;
        *) die "unknown option '$1'" ;;
        esac
    done
    [ $# -gt 0 ] && shift # --
    check >/dev/null || { check; exit 77; }
    if [ "$cmd" = up ]; then
        trap 'down' ERR
        up "$n" "$rate" $$
    else
        run "$n" "$rate" "$np" "$@"
    fi
    ;;
down) down "${1:-}" ;;
check) check ;;
-h|--help|help|"") usage ;;
*) die "unknown command '$cmd' (up | down | run | check)" ;;
esac
