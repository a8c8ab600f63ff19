// Validates an AsyncAPI document with the official parser (@asyncapi/parser): the
// specification's JSON Schema and the AsyncAPI ruleset. Exit 1 on any error or warning, and
// on a component key outside the specification's pattern, which the parser lets through.
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const path = process.argv[2];
if (!path) {
  console.error("usage: node validate.mjs <asyncapi.json>");
  process.exit(2);
}
const text = await readFile(path, "utf8");
const parser = new Parser();
const { document, diagnostics } = await parser.parse(text);

const KEY = /^[a-zA-Z0-9.\-_]+$/; // AsyncAPI 3: "All the fixed fields ... MUST use keys that match"
const badKeys = Object.entries(JSON.parse(text).components ?? {}).flatMap(([kind, items]) =>
  Object.keys(items ?? {})
    .filter((key) => !KEY.test(key))
    .map((key) => `components.${kind}.${key}`),
);
for (const key of badKeys) {
  console.log(`${path}: error component key ${key} does not match ${KEY}`);
}
const severities = ["error", "warning", "info", "hint"];
const failing = diagnostics.filter(
  (d) => d.severity === DiagnosticSeverity.Error || d.severity === DiagnosticSeverity.Warning,
);
for (const d of diagnostics) {
  console.log(`${path}: ${severities[d.severity]} ${d.code} at /${d.path.join("/")}: ${d.message}`);
}
if (document === undefined || failing.length > 0 || badKeys.length > 0) {
  const count = failing.length + badKeys.length;
  console.error(`${path}: not a valid AsyncAPI document (${count} errors or warnings)`);
  process.exit(1);
}
console.log(
  `${path}: valid AsyncAPI ${document.version()} (${document.channels().length} channels, ` +
    `${document.messages().length} messages)`,
);
