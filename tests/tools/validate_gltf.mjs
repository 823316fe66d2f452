#!/usr/bin/env node
// Validate .glb files with the Khronos glTF validator (npm package `gltf-validator`).
// Usage: node tests/tools/validate_gltf.mjs FILE.glb [FILE.glb ...]
// Prints one JSON object per file, one per line:
//   {"path", "validatorVersion", "numErrors", "numWarnings", "numInfos", "numHints", "truncated", "messages"}
// where each message is {"code", "message", "severity", "pointer"?, "offset"?} (severity 0 error .. 3 hint).
// Exit status: 0 when every file was read and validated (whatever it reports), 2 on usage or read failures.
import { readFile } from 'node:fs/promises';
import * as validator from 'gltf-validator';

const SEVERITY = ['error', 'warning', 'info', 'hint'];

async function validateOne(path) {
  const bytes = new Uint8Array(await readFile(path));
  const report = await validator.validateBytes(bytes, {
    uri: path,
    maxIssues: 0, // 0: no limit
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource not allowed: ${uri}`)),
  });
  const issues = report.issues;
  return {
    path,
    validatorVersion: report.validatorVersion,
    numErrors: issues.numErrors,
    numWarnings: issues.numWarnings,
    numInfos: issues.numInfos,
    numHints: issues.numHints,
    truncated: Boolean(issues.truncated),
    messages: issues.messages.map((m) => ({ ...m, severityName: SEVERITY[m.severity] ?? String(m.severity) })),
  };
}

const paths = process.argv.slice(2);
if (paths.length === 0) {
  console.error('usage: node validate_gltf.mjs FILE.glb [FILE.glb ...]');
  process.exit(2);
}
let failed = false;
for (const path of paths) {
  try {
    console.log(JSON.stringify(await validateOne(path)));
  } catch (err) {
    failed = true;
    console.log(JSON.stringify({ path, error: String(err && err.message ? err.message : err) }));
  }
}
process.exit(failed ? 2 : 0);
