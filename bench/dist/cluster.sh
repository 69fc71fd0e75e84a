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
#                                     Ctrl-C or any exit removes the cluster too (trap); always
#                                     ends (a watchdog on launch and on the ranks' ends, see run())
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
# `ip netns exec <namespace>` in a UTS namespace whose hostname is the namespace's name (so each
# host has its own name and Open MPI session directory, as on a real cluster). Options: --mca btl tcp,self (no vader shared memory) and
# btl_tcp_if_include / oob_tcp_if_include = the cluster subnet; TCP keepalives on the daemons'
# connections after 10 s idle, 3 probes 5 s apart, so mpirun notices a host whose link went down
# (`ip -n flc-<id>-<i> link set flc0 down`) in about 25 s instead of the default 8 minutes.
# Each rank runs under a small wrapper that records its start and exit status in $FLC_STATE/ranks,
# so a watchdog armed from the start can end mpirun when it waits for nothing: a daemon lost at
# launch (FLC_LAUNCH, default 30 s; no rank ran, so it launches once more, waiting 3x as long) or
# at teardown, a host unreachable after the ranks ended (FLC_GRACE, default 10 s); it never ends a
# running rank.
# Test hook: FLC_LOSE_DAEMON=1 makes the first launch of rank 1's daemon start nothing.
#
# Privileges: root, or CAP_NET_ADMIN + CAP_SYS_ADMIN (ip netns add mounts under /run/netns), and the
# iproute2 tools ip and tc. `check` says which is missing; tests skip (exit 77) when it fails.
set -euo pipefail

FLC_STATE=${FLC_STATE:-/tmp/flc-cluster}
case "$FLC_STATE" in /*) ;; *) FLC_STATE=$PWD/$FLC_STATE ;; esac # the agent and wrapper run elsewhere
HERE=$(cd "$(dirname "$0")" && pwd)

die() { echo "cluster.sh: $*" >&2; exit 1; }

usage() { sed -n '2,40p' "$0" | sed 's/^# \{0,1\}//'; }

check() {
    command -v ip >/dev/null || { echo "cluster.sh: 'ip' (iproute2) not found"; return 77; }
    command -v tc >/dev/null || { echo "cluster.sh: 'tc' (iproute2) not found"; return 77; }
    command -v unshare >/dev/null || { echo "cluster.sh: 'unshare' (util-linux) not found"; return 77; }
    unshare --uts true 2>/dev/null || { echo "cluster.sh: cannot create UTS namespaces (needs CAP_SYS_ADMIN)"; return 77; }
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
# test hook: lose rank 1's first daemon (exit 0, start nothing), as Open MPI now and then does
if [ -n "${FLC_LOSE_DAEMON:-}" ] && [ "${host##*-}" = 1 ] && mkdir "$(dirname "$0")/lost" 2>/dev/null; then exit 0; fi
# its own UTS namespace too, named like the host: daemons that share the machine's hostname share
# Open MPI's session directory (/tmp/ompi.<hostname>.<uid>), and then one is now and then lost
exec ip netns exec "$host" unshare --uts /bin/sh -c "hostname $host && $*"
AGENT
    chmod +x "$FLC_STATE/agent"
    echo "$rate" >"$FLC_STATE/rate"
    echo "$n" >"$FLC_STATE/size"
    echo "$id"
}

# process $1 exists, is not a zombie (kill -0 succeeds on an unreaped child) and, given $2, started
# at clock tick $2 (so a reused pid is not mistaken for it)
running() {
    local f
    f=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    f=${f##*) } # fields after "pid (comm) ": state is the first, starttime the 20th
    set -- "$1" "${2:-}" $f
    [ "$3" != Z ] && { [ -z "$2" ] || [ "${22}" = "$2" ]; }
}

# end every process inside the rank and bridge namespaces (daemons left by a killed mpirun)
kill_inside() {
    local ns
    while read -r ns; do
        timeout 10 ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    done <"$FLC_STATE/namespaces"
}

down() {
    if [ "${1:-}" = "--all" ]; then
        for ns in $(ip netns list | awk '{print $1}' | grep '^flc-' || true); do timeout 10 ip netns del "$ns" 2>/dev/null || true; done
        rm -rf "$FLC_STATE"
        return 0
    fi
    [ -f "$FLC_STATE/namespaces" ] || { rm -rf "$FLC_STATE"; return 0; }
    # processes still inside (a stuck mpirun or rank) would keep a deleted namespace alive: end them.
    # Deleting a namespace removes its veth ends (and so their peers).
    kill_inside
    while read -r ns; do timeout 10 ip netns del "$ns" 2>/dev/null || true; done <"$FLC_STATE/namespaces"
    rm -rf "$FLC_STATE"
}

# Every rank runs under $FLC_STATE/rank (a wrapper), which records in $FLC_STATE/ranks/ that the rank
# started ("R.start": pid and start time) and how it ended ("R.rc"), so the watchdog below knows
# where the job is however fast its ranks end (a rank killed by a signal ends its wrapper with the
# same signal, so mpirun reports it as before).
write_wrapper() {
    mkdir -p "$FLC_STATE/ranks"
    cat >"$FLC_STATE/rank" <<'RANK'
#!/bin/sh
d=$(dirname "$0")/ranks r=${OMPI_COMM_WORLD_RANK:?not started by mpirun}
f=$(cat /proc/$$/stat); f=${f##*) } # fields after "pid (comm) ": the start time is the 20th
echo "$$ $(echo "$f" | cut -d' ' -f20)" >"$d/$r.start.tmp" && mv "$d/$r.start.tmp" "$d/$r.start"
"$@"
rc=$?
echo "$rc" >"$d/$r.rc.tmp" && mv "$d/$r.rc.tmp" "$d/$r.rc"
if [ "$rc" -gt 128 ] && [ "$rc" -lt 160 ]; then trap - $((rc - 128)); kill -$((rc - 128)) $$; fi
exit "$rc"
RANK
    chmod +x "$FLC_STATE/rank"
}

# ranks_state NP -> "started ended failed status": ranks that started, that ended (status
# recorded, or the wrapper gone: killed), that failed (non-zero status or killed), and the job's
# status from them (the first failure's, 0 when all ended with 0)
ranks_state() {
    local np=$1 r started=0 ended=0 failed=0 status=0 rc pid t
    for ((r = 0; r < np; r++)); do
        [ -f "$FLC_STATE/ranks/$r.start" ] || continue
        started=$((started + 1))
        if [ -f "$FLC_STATE/ranks/$r.rc" ]; then
            rc=$(cat "$FLC_STATE/ranks/$r.rc")
        else
            read -r pid t <"$FLC_STATE/ranks/$r.start"
            running "$pid" "$t" && continue
            rc=137 # the wrapper itself was killed
        fi
        ended=$((ended + 1))
        if [ "$rc" -ne 0 ]; then
            failed=$((failed + 1))
            if [ "$status" -eq 0 ]; then status=$rc; fi
        fi
    done
    echo "$started $ended $failed $status"
}

run() {
    local n=$1 rate=$2 np=$3; shift 3
    [ $# -gt 0 ] || die "run needs a command after --"
    local id=$$
    trap 'down' EXIT
    trap 'exit 130' INT TERM
    up "$n" "$rate" "$id" >/dev/null
    write_wrapper
    local subnet
    subnet=$(cat "$FLC_STATE/subnet")
    # FLC_MASTER_ADDR: rank 0's address, for peers that rendezvous by address (PyTorch gloo)
    export FLC_MASTER_ADDR="${subnet%.0/24}.1" FLC_IFNAME=flc0
    local envs=(-x PATH -x FLC_MASTER_ADDR -x FLC_IFNAME) v
    for v in LD_LIBRARY_PATH OPENBLAS_NUM_THREADS $(env | grep -o '^FL_[A-Z_]*' || true); do
        [ -n "${!v:-}" ] && envs+=(-x "$v")
    done
    local launch=${FLC_LAUNCH:-30} grace=${FLC_GRACE:-10} attempt mp t0 since started ended failed status rc
    for attempt in 1 2; do
        # mpirun in rank 0's namespace; every daemon (rank 0's too) is started by the agent
        ip netns exec "flc-$id-0" mpirun --allow-run-as-root --oversubscribe -np "$np" \
            --hostfile "$FLC_STATE/hostfile" --map-by node \
            --mca plm_rsh_agent "$FLC_STATE/agent" --mca plm_rsh_no_tree_spawn 1 \
            --mca btl tcp,self --mca btl_tcp_if_include "$subnet" --mca oob_tcp_if_include "$subnet" \
            --mca oob_tcp_keepalive_time 10 --mca oob_tcp_keepalive_intvl 5 --mca oob_tcp_keepalive_probes 3 \
            --mca orte_keep_fqdn_hostnames 1 "${envs[@]}" "$FLC_STATE/rank" "$@" &
        mp=$! t0=$SECONDS since=-1
        # The watchdog, armed from the start: mpirun is ended (a) when not every rank has started
        # within FLC_LAUNCH s (default 30: Open MPI 4.1 now and then loses a daemon at launch and
        # waits for it forever); if no rank started at all nothing ran, so the launch is tried once
        # more; (b) FLC_GRACE s (default 10) after every rank ended, or after a rank failed while
        # others still run (mpirun ends such a job itself, unless it waits for a daemon it cannot
        # reach: a link down, or one lost at teardown). A rank still running is never ended.
        while running "$mp"; do
            sleep 0.5
            read -r started ended failed status <<<"$(ranks_state "$np")"
            if [ "$started" -lt "$np" ] && [ "$failed" -eq 0 ]; then
                [ $((SECONDS - t0)) -lt "$launch" ] || break
            elif [ "$ended" -eq "$started" ] || [ "$failed" -gt 0 ]; then
                [ "$since" -ge 0 ] || since=$SECONDS
                [ $((SECONDS - since)) -lt "$grace" ] || break
            else
                since=-1
            fi
        done
        if ! running "$mp"; then
            rc=0
            wait "$mp" || rc=$?
            return "$rc"
        fi
        kill -9 "$mp" 2>/dev/null || true
        wait "$mp" 2>/dev/null || true
        kill_inside # the daemons and ranks mpirun leaves behind
        if [ "$started" -eq 0 ] && [ "$attempt" -eq 1 ]; then
            echo "cluster.sh: no rank started within $launch s (an Open MPI daemon lost at launch): launching again" >&2
            rm -f "$FLC_STATE"/ranks/*
            launch=$((launch * 3)) # the second try waits longer: a loaded machine may be why
            continue
        fi
        if [ "$started" -lt "$np" ] && [ "$failed" -eq 0 ]; then
            echo "cluster.sh: only $started of $np ranks started within $launch s: ended mpirun" >&2
            return 1
        fi
        if [ "$ended" -eq "$started" ]; then
            echo "cluster.sh: all $ended ranks ended (status $status) but mpirun did not exit within $grace s: ended it" >&2
        else
            echo "cluster.sh: a rank failed (status $status) and mpirun did not end the job within $grace s (a host unreachable?): ended it" >&2
            [ "$status" -ne 0 ] || status=1
        fi
        return "$status"
    done
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
