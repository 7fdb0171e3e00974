// Compiles every schema in the directory given with ajv in strict mode (draft 2020-12, formats
// asserted), then validates the documents read as JSON from stdin: {"<file>": [document, ...]}.
// Prints {"<file>": [null or the first error, ...]}; exits 1 when a schema does not compile.
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import addFormats from "ajv-formats";

const dir = process.argv[2];
const ajv = new Ajv2020({ strict: true, allErrors: false });
addFormats(ajv);
const validators = {};
for (const file of readdirSync(dir).filter((f) => f.endsWith(".schema.json"))) {
  try {
    validators[file] = ajv.compile(JSON.parse(readFileSync(join(dir, file), "utf8")));
  } catch (error) {
    console.error(`${file}: ${error.message}`);
    process.exit(1);
  }
}
const documents = JSON.parse(readFileSync(0, "utf8"));
const results = {};
for (const [file, list] of Object.entries(documents)) {
  results[file] = list.map((document) => {
    const validate = validators[file];
    if (validate(document)) return null;
    const [error] = validate.errors;
    return `${error.instancePath || "/"} ${error.message}`;
  });
}
console.log(JSON.stringify(results));
