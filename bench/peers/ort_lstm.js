// Peer benchmark: ONNX Runtime (onnxruntime-node, CPU) on an ONNX file exported from nn.LSTM.
//   node ort_lstm.js MODEL.onnx BATCH SEQ INPUT ROUNDS THREADS [LENGTHS]
// LENGTHS: comma-separated per-sequence lengths fed as the int32 (B) input "lens" (sequence_lens of
// every LSTM node, see torch_lstm.py export ... lens).
// Prints "us_per_step MEDIAN MIN MAX" (sequence latency / SEQ) or "unavailable: why".
// For bench/peers/run.sh's rounds: FL_PEER_BLOCK_MS=M times blocks of about M ms (ort_time.js);
// FL_PEER_SERVE=1 keeps the process: after creating the session it prints "ready", then times once
// (warm-up, calibration, blocks) and prints one result line for every line read on stdin, and exits
// at end of input (node's start and the session creation are paid once per row, not once per round).
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
  const blockMs = Number(process.env.FL_PEER_BLOCK_MS || 0);
  const once = async () => {
    const v = (await require('./ort_time.js').timeRuns(sess, feeds, rounds, blockMs)).map((ms) => ms * 1e3 / T);
    return `us_per_step ${v[Math.floor(v.length / 2)].toFixed(3)} ${v[0].toFixed(3)} ${v[v.length - 1].toFixed(3)}`;
  };
  if (process.env.FL_PEER_SERVE !== '1') {
    console.log(await once());
    return;
  }
  console.log('ready');
  const rl = require('readline').createInterface({ input: process.stdin });
  for await (const line of rl) { // eslint-disable-line no-unused-vars
    try {
      console.log(await once());
    } catch (e) {
      console.log('unavailable: ' + String(e.message).split('\n')[0]);
    }
  }
  process.exit(0);
}
main().catch((e) => { console.log('unavailable: ' + String(e.message).split('\n')[0]); process.exit(0); });
