#!/usr/bin/env node
// Compiles every contracts/*.sol with the pinned solc-js (standard JSON), resolving
// `@openzeppelin/` imports from .tools/node_modules, and writes one JSON per contract
// (abi, bytecode, deployedBytecode) into the output folder.
//
// Usage: node tools/compile.js <workspace-root> <out-dir>
//
// The output is deterministic: relative source names, no metadata hash in the bytecode,
// keys sorted, two-space indentation, a trailing newline.
'use strict';

const fs = require('fs');
const path = require('path');

const root = path.resolve(process.argv[2] || path.join(__dirname, '..'));
const outDir = path.resolve(process.argv[3] || path.join(root, 'contracts-abi'));
const modules = path.join(root, '.tools', 'node_modules');
const solc = require(path.join(modules, 'solc'));

const contractsDir = path.join(root, 'contracts');
const files = fs.readdirSync(contractsDir).filter((f) => f.endsWith('.sol')).sort();
const sources = {};
for (const file of files) {
  sources[`contracts/${file}`] = { content: fs.readFileSync(path.join(contractsDir, file), 'utf8') };
}

const input = {
  language: 'Solidity',
  sources,
  settings: {
    optimizer: { enabled: true, runs: 200 },
    evmVersion: 'cancun',
    metadata: { bytecodeHash: 'none', appendCBOR: false },
    outputSelection: { '*': { '*': ['abi', 'evm.bytecode.object', 'evm.deployedBytecode.object'] } },
  },
};

function findImports(importPath) {
  const candidates = [];
  if (importPath.startsWith('@openzeppelin/')) candidates.push(path.join(modules, importPath));
  if (importPath.startsWith('contracts/')) candidates.push(path.join(root, importPath));
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) return { contents: fs.readFileSync(candidate, 'utf8') };
  }
  return { error: `import not found: ${importPath} (run \`cargo xtask tools\`)` };
}

const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));
let failed = false;
for (const diagnostic of output.errors || []) {
  if (diagnostic.severity === 'error') failed = true;
  // Warnings about the pinned library (e.g. its use of transient storage) are not ours to fix.
  const file = diagnostic.sourceLocation && diagnostic.sourceLocation.file;
  if (diagnostic.severity !== 'error' && file && !file.startsWith('contracts/')) continue;
  process.stderr.write(diagnostic.formattedMessage || diagnostic.message);
}
if (failed) process.exit(1);

function sortKeys(value) {
  if (Array.isArray(value)) return value.map(sortKeys);
  if (value && typeof value === 'object') {
    const sorted = {};
    for (const key of Object.keys(value).sort()) sorted[key] = sortKeys(value[key]);
    return sorted;
  }
  return value;
}

fs.mkdirSync(outDir, { recursive: true });
const written = [];
for (const source of Object.keys(output.contracts || {}).sort()) {
  if (!source.startsWith('contracts/')) continue;
  for (const name of Object.keys(output.contracts[source]).sort()) {
    const contract = output.contracts[source][name];
    const artifact = sortKeys({
      abi: contract.abi,
      bytecode: `0x${contract.evm.bytecode.object}`,
      deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
    });
    fs.writeFileSync(path.join(outDir, `${name}.json`), `${JSON.stringify(artifact, null, 2)}\n`);
    written.push(name);
  }
}
process.stdout.write(`${written.join('\n')}\n`);
