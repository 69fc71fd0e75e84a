// Latency of a whole application model (embedding, LSTM layers, head) in ONNX Runtime (onnxruntime-node,
// CPU), on an ONNX file written by bench/apps/torch_time.py ... export (bench/apps/run.sh).
//   node ort_app.js MODEL.onnx BATCH SEQ INPUT VOCAB ROUNDS THREADS
// INPUT: the feature size (VOCAB 0: float32 (T, B, INPUT) input); VOCAB > 0: int64 (T, B) token ids.
// Prints "ms MEDIAN MIN MAX" (one request of BATCH sequences of SEQ steps) or "unavailable: why".
// The timing loop is bench/peers/ort_lstm.js's.
'use strict';
async function main() {
  const [path, B, T, D, V, rounds, threads] = [process.argv[2], ...process.argv.slice(3).map(Number)];
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    console.log('unavailable: cannot load onnxruntime-node (' + String(e.message).split('\n')[0] + ')');
    return;
  }
  const sess = await ort.InferenceSession.create(path, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential',
    graphOptimizationLevel: 'all',
  });
  let s = 1;
  const rnd = () => { s = (s * 1103515245 + 12345) % 2147483648; return s / 2147483648; };
  let x;
  if (V > 0) {
    const ids = new BigInt64Array(T * B);
    for (let i = 0; i < ids.length; i++) ids[i] = BigInt(Math.floor(rnd() * V));
    x = new ort.Tensor('int64', ids, [T, B]);
  } else {
    const f = new Float32Array(T * B * D);
    for (let i = 0; i < f.length; i++) f[i] = rnd() * 2 - 1;
    x = new ort.Tensor('float32', f, [T, B, D]);
  }
  const feeds = { x };
  const v = await require('../peers/ort_time.js').timeRuns(sess, feeds, rounds);
  console.log(`ms ${v[Math.floor(v.length / 2)].toFixed(4)} ${v[0].toFixed(4)} ${v[v.length - 1].toFixed(4)}`);
}
main().catch((e) => console.log('unavailable: ' + String(e.message).split('\n')[0]));
