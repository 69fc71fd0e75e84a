# Rounds of bench/peers/run.sh (sourced; also by tests/test_peers_rounds.sh, which drives it with
# fake sides): a row's sides timed in ROUNDS rounds in a rotating order, figures over rounds, ratios
# paired within a round, and the persistent harness processes of PyTorch and ONNX Runtime.
# Needs ROUNDS (>= 1), WORK (a scratch folder) and BLOCK_MS (FL_PEER_BLOCK_MS of the harnesses).

declare -A RES=() SRV_IN=() SRV_OUT=() SRV_PID=() SRV_WHY=()
ORDER=()

# measure CMD...: side i is the shell command CMD_i, which prints one round's line ("us_per_step MED
# MIN MAX" or "unavailable: why"). Round r (0..ROUNDS-1) runs the sides in the order r, r+1, ...
# (mod n), so no side always runs first or last; RES[i,r] holds side i's line of round r, ORDER[r]
# the order round r ran.
measure() {
  local -a cmd=("$@")
  local n=$# r k i
  RES=() ORDER=()
  for ((r = 0; r < ROUNDS; r++)); do
    ORDER[r]=""
    for ((k = 0; k < n; k++)); do
      i=$(((k + r) % n))
      RES[$i,$r]=$(eval "${cmd[i]}" 2>&1 | tail -1)
      ORDER[r]+="$i "
      # a side's worker threads may spin on for a while after its timing (ONNX Runtime's and
      # OpenMP's pools do): let them park before the next side starts
      [ "${SETTLE_S:-0}" != 0 ] && sleep "$SETTLE_S"
    done
  done
}

med() { # numbers, one a line -> "MEDIAN MIN MAX COUNT", nothing for none
  sort -g | awk '{ v[NR] = $1 } END { if (NR) printf "%.10g %.10g %.10g %d\n",
    NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2, v[1], v[NR], NR }'
}
round_val() { # I R -> side I's median of round R, nothing when that round failed
  case ${RES[$1,$2]-} in us_per_step\ *) set -- ${RES[$1,$2]}; echo "$2" ;; esac
}
side_stats() { # I -> "MEDIAN MIN MAX COUNT" over side I's rounds (medians of its round medians)
  local r
  for ((r = 0; r < ROUNDS; r++)); do round_val "$1" $r; done | med
}
ratio_stats() { # I J -> "MEDIAN MIN MAX COUNT" of the per-round ratio side I / side J, rounds both ran
  local r a b
  for ((r = 0; r < ROUNDS; r++)); do
    a=$(round_val "$1" $r) b=$(round_val "$2" $r)
    [ -n "$a" ] && [ -n "$b" ] && awk -v a="$a" -v b="$b" 'BEGIN { printf "%.10g\n", a / b }'
  done | med
}
first_failure() { # I -> side I's first line that is not a timing
  local r
  for ((r = 0; r < ROUNDS; r++)); do
    [ -n "$(round_val "$1" $r)" ] || { echo "${RES[$1,$r]:-unavailable: no output}"; return; }
  done
}
# cell I -> "MEDIAN us [MIN..MAX] xR" (xR: the median per-round ratio to side 0; "(k/N rounds; why)"
# when side I failed in some rounds), or side I's failure when it ran in none.
cell() {
  local s q
  s=$(side_stats "$1")
  [ -z "$s" ] && { printf "%s" "$(first_failure "$1")"; return; }
  q=$(ratio_stats "$1" 0)
  set -- "$1" $s
  printf "%9.2f us [%.2f..%.2f]" "$2" "$3" "$4"
  [ -n "$q" ] && printf " x%.2f" "${q%% *}"
  [ "$5" -lt "$ROUNDS" ] && printf " (%d/%d rounds; %.60s)" "$5" "$ROUNDS" "$(first_failure "$1")"
  return 0
}

# srv_start NAME WHY CMD...: CMD as a persistent harness (FL_PEER_SERVE=1) that reads one request a
# line on a FIFO and answers one result line on another; returns once it printed "ready", so its
# start-up never overlaps another side's timing. WHY non-empty: the side is unavailable for that.
srv_start() {
  local name=$1 why=$2 fd line="" f
  shift 2
  srv_stop "$name"
  SRV_WHY[$name]=""
  [ -n "$why" ] && { SRV_WHY[$name]="unavailable: $why"; return; }
  rm -f "$WORK/$name.in" "$WORK/$name.out"
  mkfifo "$WORK/$name.in" "$WORK/$name.out" || { SRV_WHY[$name]="unavailable: mkfifo failed"; return; }
  ( # the other harnesses' FIFO ends stay with run.sh, so each sees the end of its own input
    for f in "${SRV_IN[@]}" "${SRV_OUT[@]}"; do eval "exec $f>&-"; done
    export FL_PEER_SERVE=1 FL_PEER_BLOCK_MS=$BLOCK_MS
    exec "$@"
  ) <"$WORK/$name.in" >"$WORK/$name.out" 2>"$WORK/$name.err" &
  SRV_PID[$name]=$!
  exec {fd}>"$WORK/$name.in"
  SRV_IN[$name]=$fd
  exec {fd}<"$WORK/$name.out"
  SRV_OUT[$name]=$fd
  read -r -t 600 line <&"$fd" || line=""
  [ "$line" = ready ] && return
  SRV_WHY[$name]=${line:-"unavailable: the $name harness did not start ($(tail -1 "$WORK/$name.err"))"}
  srv_stop "$name"
}
srv_time() { # NAME: one round of a persistent harness (its result line)
  local name=$1 line=""
  [ -n "${SRV_WHY[$name]-}" ] && { echo "${SRV_WHY[$name]}"; return; }
  [ -n "${SRV_PID[$name]-}" ] || { echo "unavailable: the $name harness is not running"; return; }
  if kill -0 "${SRV_PID[$name]}" 2>/dev/null && (echo go >&"${SRV_IN[$name]}") 2>/dev/null &&
    read -r -t 900 line <&"${SRV_OUT[$name]}" && [ -n "$line" ]; then
    echo "$line"
  else
    echo "unavailable: the $name harness stopped ($(tail -1 "$WORK/$name.err" 2>/dev/null))"
  fi
}
srv_stop() { # NAME: end of input for a persistent harness, then its process id if it lingers
  local name=$1 pid=${SRV_PID[$1]-} i
  [ -n "${SRV_IN[$name]-}" ] && eval "exec ${SRV_IN[$name]}>&-"
  [ -n "${SRV_OUT[$name]-}" ] && eval "exec ${SRV_OUT[$name]}<&-"
  if [ -n "$pid" ]; then
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  fi
  unset "SRV_IN[$name]" "SRV_OUT[$name]" "SRV_PID[$name]"
  return 0
}
