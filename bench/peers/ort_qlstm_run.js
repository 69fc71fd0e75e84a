// Run an ONNX graph once in ONNX Runtime (onnxruntime-node, CPU, one thread) for an output check:
//   node ort_qlstm_run.js MODEL.onnx X.bin T B D Y.bin
// X.bin: float32 (T, B, D) fed as input "x"; writes output "y" as raw float32 to Y.bin.
// Used by ort_qlstm.py check (the timing of such a graph is ort_lstm.js).
'use strict';
const fs = require('fs');
async function main() {
  const [path, xpath, T, B, D, ypath] = [process.argv[2], process.argv[3], ...process.argv.slice(4, 7).map(Number),
    process.argv[7]];
  const ort = require('onnxruntime-node');
  const sess = await ort.InferenceSession.create(path, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const buf = fs.readFileSync(xpath);
  const x = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
  if (x.length !== T * B * D) throw new Error(`X.bin holds ${x.length} floats, expected ${T * B * D}`);
  const out = await sess.run({ x: new ort.Tensor('float32', Float32Array.from(x), [T, B, D]) });
  const y = out.y.data;
  fs.writeFileSync(ypath, Buffer.from(y.buffer, y.byteOffset, y.length * 4));
}
main().catch((e) => { console.log('error: ' + String(e.message).split('\n')[0]); process.exit(1); });
