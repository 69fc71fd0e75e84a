// Peer for the serve benchmark: the same model in ONNX Runtime (onnxruntime-node, CPU) behind Node's
// `http` module, what a user could put together in an hour. Same endpoint and bodies as fastlstm serve:
//   POST /v1/models/NAME/predict   JSON {"inputs": [B][T][D] features or [B][T] token ids}
//                                  -> {"outputs": ...} as `fastlstm run` writes them,
//                                  or a .npy body (Content-Type: application/x-npy; <f4 features,
//                                  <i4 / <i8 ids) -> .npy
// One request, one session.run (no batching across requests); Node runs them one after another on
// its event loop, ORT with THREADS intra-op threads.
//   NODE_PATH=~/.cache/fastlstm-peers/ort/node_modules node ort_server.js MODEL.onnx PORT [THREADS] [NAME] [LAYOUT]
// LAYOUT batch (default): MODEL.onnx from `fastlstm export` (any model: embedding, heads; input x
// (B, T, D) float32 or (B, T) int64 ids, output y as `fastlstm run`). LAYOUT time: a bare nn.LSTM as
// bench/peers/torch_lstm.py exports it (x (T, B, D), y (T, B, H)).
// Prints "listening on 127.0.0.1:PORT" once ready (PORT 0: any free port).
'use strict';
const http = require('http');

function parseNpy(buf) {
  if (buf.length < 10 || buf.readUInt8(0) !== 0x93 || buf.toString('latin1', 1, 6) !== 'NUMPY') throw new Error('.npy: bad magic');
  const major = buf.readUInt8(6);
  const hlen = major === 1 ? buf.readUInt16LE(8) : buf.readUInt32LE(8);
  const start = major === 1 ? 10 : 12;
  const header = buf.toString('latin1', start, start + hlen);
  const descr = (header.match(/'descr':\s*'([<|][fi][48])'/) || [])[1];
  if (!['<f4', '<i4', '<i8'].includes(descr) || !/'fortran_order':\s*False/.test(header)) throw new Error('.npy: need <f4, <i4 or <i8, C order');
  const shape = header.match(/'shape':\s*\(([^)]*)\)/)[1].split(',').map((s) => s.trim()).filter((s) => s).map(Number);
  const raw = buf.buffer.slice(buf.byteOffset + start + hlen, buf.byteOffset + buf.length);
  const data = descr === '<f4' ? new Float32Array(raw) : descr === '<i4' ? new Int32Array(raw) : new BigInt64Array(raw);
  return { shape, data, ids: descr !== '<f4' };
}

function writeNpy(data, shape) {
  let dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  const total = 10 + dict.length + 1;
  dict += ' '.repeat((64 - (total % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  head.writeUInt8(0x93, 0);
  head.write('NUMPY', 1, 'latin1');
  head.writeUInt8(1, 6);
  head.writeUInt8(0, 7);
  head.writeUInt16LE(dict.length, 8);
  return Buffer.concat([head, Buffer.from(dict, 'latin1'), Buffer.from(data.buffer, data.byteOffset, data.byteLength)]);
}

async function main() {
  const [path, port, threads, name, layout] = [process.argv[2], Number(process.argv[3] || 0), Number(process.argv[4] || 1),
    process.argv[5] || 'model', process.argv[6] || 'batch'];
  if (!path || !['batch', 'time'].includes(layout)) {
    console.error('usage: node ort_server.js MODEL.onnx PORT [THREADS] [NAME] [batch|time]');
    process.exit(2);
  }
  const ort = require('onnxruntime-node');
  const sess = await ort.InferenceSession.create(path, {
    intraOpNumThreads: threads, interOpNumThreads: 1, executionMode: 'sequential', graphOptimizationLevel: 'all',
  });
  const route = `/v1/models/${name}/predict`;
  const server = http.createServer((req, res) => {
    const fail = (code, msg) => {
      res.writeHead(code, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { code, message: msg } }));
    };
    // fastlstm export's graph: batch-major x, features or int64 ids; y already shaped as the answer.
    const runBatchMajor = async (body, npy) => {
      let x;
      if (npy) {
        const a = parseNpy(body);
        x = a.ids ? new ort.Tensor('int64', BigInt64Array.from(a.data, (v) => BigInt(v)), a.shape)
          : new ort.Tensor('float32', a.data, a.shape);
      } else {
        const inputs = JSON.parse(body.toString()).inputs;
        const ids = !Array.isArray(inputs[0][0]);
        const flat = inputs.flat(2);
        const shape = ids ? [inputs.length, inputs[0].length] : [inputs.length, inputs[0].length, inputs[0][0].length];
        x = ids ? new ort.Tensor('int64', BigInt64Array.from(flat, (v) => BigInt(v)), shape)
          : new ort.Tensor('float32', Float32Array.from(flat), shape);
      }
      const y = (await sess.run({ x })).y;
      if (npy) {
        res.writeHead(200, { 'Content-Type': 'application/x-npy' });
        return res.end(writeNpy(y.data, y.dims));
      }
      const nest = (off, d) => (d === y.dims.length - 1 ? Array.from(y.data.subarray(off, off + y.dims[d]))
        : Array.from({ length: y.dims[d] }, (_, i) => nest((off + i) * y.dims[d + 1], d + 1)));
      res.writeHead(200, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ outputs: nest(0, 0) }));
    };
    if (req.method !== 'POST' || req.url !== route) return fail(404, `no such endpoint: ${req.method} ${req.url}`);
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      try {
        const body = Buffer.concat(chunks);
        const npy = (req.headers['content-type'] || '').startsWith('application/x-npy');
        if (layout === 'batch') return runBatchMajor(body, npy);
        let B, T, D, xb;
        if (npy) {
          const a = parseNpy(body);
          [B, T, D] = a.shape;
          xb = a.data;
        } else {
          const inputs = JSON.parse(body.toString()).inputs;
          B = inputs.length; T = inputs[0].length; D = inputs[0][0].length;
          xb = new Float32Array(B * T * D);
          for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) xb.set(inputs[b][t], (b * T + t) * D);
        }
        // The exported graph is time-major: (B, T, D) -> (T, B, D), and back for y.
        const x = new Float32Array(T * B * D);
        for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) x.set(xb.subarray((b * T + t) * D, (b * T + t + 1) * D), (t * B + b) * D);
        const out = await sess.run({ x: new ort.Tensor('float32', x, [T, B, D]) });
        const y = out.y.data, H = out.y.dims[out.y.dims.length - 1];
        const yb = new Float32Array(B * T * H);
        for (let b = 0; b < B; b++) for (let t = 0; t < T; t++) yb.set(y.subarray((t * B + b) * H, (t * B + b + 1) * H), (b * T + t) * H);
        if (npy) {
          res.writeHead(200, { 'Content-Type': 'application/x-npy' });
          return res.end(writeNpy(yb, [B, T, H]));
        }
        const nested = [];
        for (let b = 0; b < B; b++) {
          const rows = [];
          for (let t = 0; t < T; t++) rows.push(Array.from(yb.subarray((b * T + t) * H, (b * T + t + 1) * H)));
          nested.push(rows);
        }
        res.writeHead(200, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify({ outputs: nested }));
      } catch (e) {
        fail(400, String(e.message));
      }
    });
  });
  server.keepAliveTimeout = 10000;
  server.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${server.address().port}`));
  const stop = () => server.close(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}
main().catch((e) => {
  console.error('ort_server: ' + e.message);
  process.exit(1);
});
