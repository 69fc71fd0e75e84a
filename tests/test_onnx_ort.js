// Optional reference for tests/test_onnx_torch.sh: run an ONNX model with ONNX Runtime (onnxruntime-node).
//   node test_onnx_ort.js MODEL.onnx OUTDIR NAME=IN.npy ...
// Writes every graph output to OUTDIR/<output name>.npy (float32). Prints "unavailable: why" and
// exits 0 when onnxruntime-node cannot be loaded (the test then skips this reference).
'use strict';
const fs = require('fs');

function readNpy(path) {
  const b = fs.readFileSync(path);
  if (b.toString('latin1', 1, 6) !== 'NUMPY') throw new Error(path + ': not .npy');
  const hl = b[6] === 1 ? b.readUInt16LE(8) : b.readUInt32LE(8);
  const off = b[6] === 1 ? 10 : 12;
  const h = b.toString('latin1', off, off + hl);
  const descr = /'descr':\s*'([^']+)'/.exec(h)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(h)[1].split(',').filter((s) => s.trim()).map(Number);
  const data = b.subarray(off + hl);
  const ab = data.buffer.slice(data.byteOffset, data.byteOffset + data.length);
  if (descr === '<f4') return { type: 'float32', data: new Float32Array(ab), shape };
  if (descr === '<i8') return { type: 'int64', data: new BigInt64Array(ab), shape };
  if (descr === '<i4') return { type: 'int32', data: new Int32Array(ab), shape };
  throw new Error(path + ': dtype ' + descr);
}

function writeNpy(path, data, shape) {
  let h = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  while ((10 + h.length + 1) % 64) h += ' ';
  h += '\n';
  const head = Buffer.alloc(10);
  head.write('\x93NUMPY', 0, 'latin1');
  head[6] = 1;
  head[7] = 0;
  head.writeUInt16LE(h.length, 8);
  fs.writeFileSync(path, Buffer.concat([head, Buffer.from(h, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]));
}

async function main() {
  const [model, outdir, ...pairs] = process.argv.slice(2);
  let ort;
  try {
    ort = require('onnxruntime-node');
  } catch (e) {
    console.log('unavailable: cannot load onnxruntime-node (' + String(e.message).split('\n')[0] + ')');
    return;
  }
  const sess = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, interOpNumThreads: 1 });
  const feeds = {};
  for (const p of pairs) {
    const [name, file] = p.split('=');
    const t = readNpy(file);
    feeds[name] = new ort.Tensor(t.type, t.data, t.shape);
  }
  const out = await sess.run(feeds);
  for (const name of sess.outputNames) writeNpy(`${outdir}/${name}.npy`, out[name].data, out[name].dims);
  console.log('ok');
}
main().catch((e) => { console.log('error: ' + String(e.message).split('\n')[0]); process.exit(1); });
