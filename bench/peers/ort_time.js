// Timing of one ONNX Runtime session for the peer benchmarks (ort_lstm.js, ../apps/ort_app.js): after a
// warm-up run, ROUNDS rounds of as many runs as fill about 0.2 s (a tenth of that for a smoke run of
// <= 2 rounds); returns each round's milliseconds per run, sorted. With blockMs (bench/peers/run.sh's
// rounds): blocks of about blockMs, no tenth; when one run is longer than a block, as many one-run
// blocks as fit ROUNDS * blockMs, at least one.
'use strict';
async function timeRuns(sess, feeds, rounds, blockMs) {
  const now = () => Number(process.hrtime.bigint()) / 1e6;
  await sess.run(feeds);
  let t0 = now();
  await sess.run(feeds);
  const one = Math.max(now() - t0, 0.001);
  let reps;
  if (blockMs > 0) {
    reps = Math.max(1, Math.floor(blockMs / one));
    if (reps === 1) rounds = Math.max(1, Math.min(rounds, Math.round(rounds * blockMs / one)));
  } else {
    reps = Math.max(1, Math.floor(200 / one));
    if (rounds <= 2) reps = Math.max(1, Math.floor(reps / 10));
  }
  const v = [];
  for (let r = 0; r < rounds; r++) {
    t0 = now();
    for (let i = 0; i < reps; i++) await sess.run(feeds);
    v.push((now() - t0) / reps);
  }
  return v.sort((a, b) => a - b);
}
module.exports = { timeRuns };
