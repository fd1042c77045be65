// Prints the workflow command GitHub's own toolkit emits for each case read from stdin (a JSON
// list of {command, message, title, file, line}), so tests can compare escaping byte for byte.
const core = require("@actions/core");
const cases = JSON.parse(require("node:fs").readFileSync(0, "utf8"));
for (const c of cases) {
  const props = { title: c.title, file: c.file, startLine: c.line };
  if (c.command === "error") core.error(c.message, props);
  else if (c.command === "warning") core.warning(c.message, props);
  else core.notice(c.message, props);
}
