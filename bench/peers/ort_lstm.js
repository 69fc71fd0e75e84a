// Peer benchmark: ONNX Runtime (onnxruntime-node, CPU) on an ONNX file exported from nn.LSTM.
//   node ort_lstm.js MODEL.onnx BATCH SEQ INPUT ROUNDS THREADS [LENGTHS]
// LENGTHS: comma-separated per-sequence lengths fed as the int32 (B) input "lens" (sequence_lens of
// every LSTM node, see torch_lstm.py export ... lens).
// Prints "us_per_step MEDIAN MIN MAX" (sequence latency / SEQ) or "unavailable: why".
'use strict';
async function main() {
  const [path, B, T, D, rounds, threads] = [process.argv[2], ...process.argv.slice(3).map(Number)];
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
  const x = new Float32Array(T * B * D);
  let s = 1;
  for (let i = 0; i < x.length; i++) { s = (s * 1103515245 + 12345) % 2147483648; x[i] = s / 2147483648 * 2 - 1; }
  const feeds = { x: new ort.Tensor('float32', x, [T, B, D]) };
  if (process.argv[8]) {
    const lens = Int32Array.from(process.argv[8].split(',').map(Number));
    if (lens.length !== B) throw new Error(`need ${B} lengths, got ${lens.length}`);
    feeds.lens = new ort.Tensor('int32', lens, [B]);
  }
  const v = (await require('./ort_time.js').timeRuns(sess, feeds, rounds)).map((ms) => ms * 1e3 / T);
  console.log(`us_per_step ${v[Math.floor(v.length / 2)].toFixed(3)} ${v[0].toFixed(3)} ${v[v.length - 1].toFixed(3)}`);
}
main().catch((e) => console.log('unavailable: ' + String(e.message).split('\n')[0]));
