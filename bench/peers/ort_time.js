// Timing of one ONNX Runtime session for the peer benchmarks (ort_lstm.js, ../apps/ort_app.js): after a
// warm-up run, ROUNDS rounds of as many runs as fill about 0.2 s (a tenth of that for a smoke run of
// <= 2 rounds); returns each round's milliseconds per run, sorted.
'use strict';
async function timeRuns(sess, feeds, rounds) {
  const now = () => Number(process.hrtime.bigint()) / 1e6;
  await sess.run(feeds);
  let t0 = now();
  await sess.run(feeds);
  const one = now() - t0;
  let reps = Math.max(1, Math.floor(200 / Math.max(one, 0.001)));
  if (rounds <= 2) reps = Math.max(1, Math.floor(reps / 10));
  const v = [];
  for (let r = 0; r < rounds; r++) {
    t0 = now();
    for (let i = 0; i < reps; i++) await sess.run(feeds);
    v.push((now() - t0) / reps);
  }
  return v.sort((a, b) => a - b);
}
module.exports = { timeRuns };
