// Reference outputs for `python -m export tfjs --parity`: runs a TF.js graph model with TF.js itself (pure-JS CPU
// backend, no native addon, no network) so the ONNX conversion can be compared against the original runtime.
//
// usage: node tfjs_reference.js MODEL_JSON INPUT_F32 INPUT_SHAPE_JSON INPUT_NAME OUTPUT_NODES OUT_DIR
//   INPUT_F32         raw little-endian float32 input tensor
//   INPUT_SHAPE_JSON  e.g. "[2,256,256,3]"
//   OUTPUT_NODES      comma-separated graph node names to execute (may cut the graph before post-processing)
// Writes OUT_DIR/<i>.f32 (raw float32) per requested node and OUT_DIR/outputs.json ([{name, shape}]).
// Resolve the TF.js packages with NODE_PATH=<cache>/node_modules (`npm install @tensorflow/tfjs@4` there).
'use strict';

const fs = require('fs');
const path = require('path');
const tf = require('@tensorflow/tfjs-core');
require('@tensorflow/tfjs-backend-cpu');
const converter = require('@tensorflow/tfjs-converter');

// An IOHandler that reads model.json and its weight shards from disk (tfjs's http loader needs fetch).
function fileHandler(modelJsonPath) {
  return {
    load: async () => {
      const model = JSON.parse(fs.readFileSync(modelJsonPath, 'utf8'));
      const dir = path.dirname(modelJsonPath);
      const specs = [];
      const buffers = [];
      for (const group of model.weightsManifest) {
        for (const p of group.paths) buffers.push(fs.readFileSync(path.join(dir, p)));
        specs.push(...group.weights);
      }
      const all = Buffer.concat(buffers);
      const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength);
      return {
        modelTopology: { versions: {}, ...model.modelTopology }, // tfjs reads versions.producer
        weightSpecs: specs,
        weightData,
        format: model.format,
        generatedBy: model.generatedBy,
        convertedBy: model.convertedBy,
        signature: model.signature,
        userDefinedMetadata: model.userDefinedMetadata,
      };
    },
  };
}

async function main() {
  const [modelJson, inputFile, shapeJson, inputName, outputNodes, outDir] = process.argv.slice(2);
  if (!outDir) throw new Error('usage: tfjs_reference.js MODEL_JSON INPUT_F32 SHAPE_JSON INPUT_NAME OUTPUTS OUT_DIR');
  await tf.setBackend('cpu');
  const model = await converter.loadGraphModel(fileHandler(modelJson));
  const shape = JSON.parse(shapeJson);
  const raw = fs.readFileSync(inputFile);
  const data = new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  const input = tf.tensor(data, shape, 'float32');
  const names = outputNodes.split(',');
  let outs = model.execute({ [inputName]: input }, names);
  if (!Array.isArray(outs)) outs = [outs];
  fs.mkdirSync(outDir, { recursive: true });
  const meta = [];
  for (let i = 0; i < outs.length; i += 1) {
    const values = Float32Array.from(outs[i].dataSync());
    fs.writeFileSync(path.join(outDir, `${i}.f32`), Buffer.from(values.buffer));
    meta.push({ name: names[i], shape: outs[i].shape });
  }
  fs.writeFileSync(path.join(outDir, 'outputs.json'), JSON.stringify(meta));
}

main().catch((err) => {
  process.stderr.write(`${err.stack || err}\n`);
  process.exit(1);
});
