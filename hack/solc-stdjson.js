#!/usr/bin/env node
// solc-js as a pipe: Solidity standard JSON on stdin, standard JSON on stdout.
//
// Why: no native solc is reachable offline, and `npx solcjs --standard-json` prints a banner on stdout before the
// JSON. Calling solc.compile ourselves keeps stdout pure JSON. Imports the input does not carry are read from the
// repository's node_modules/ (e.g. "@openzeppelin/contracts/..."), and nothing else on disk is reachable.
// `--version` prints the compiler's full version string (used by hack/compile_contracts.py and the solc shim).
"use strict";

const fs = require("fs");
const path = require("path");

const repo = path.resolve(__dirname, "..");
const modules = path.join(repo, "node_modules");
const solc = require(path.join(modules, "solc"));

function findImport(importPath) {
  const resolved = path.resolve(modules, importPath);
  if (!resolved.startsWith(modules + path.sep)) {
    return { error: "import outside node_modules refused: " + importPath };
  }
  try {
    return { contents: fs.readFileSync(resolved, "utf8") };
  } catch (err) {
    return { error: "import not found: " + importPath };
  }
}

if (process.argv.includes("--version")) {
  process.stdout.write(solc.version() + "\n");
} else {
  const chunks = [];
  process.stdin.on("data", (chunk) => chunks.push(chunk));
  process.stdin.on("end", () => {
    const input = Buffer.concat(chunks).toString("utf8");
    process.stdout.write(solc.compile(input, { import: findImport }));
  });
}
