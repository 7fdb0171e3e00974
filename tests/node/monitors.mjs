// Validates Prometheus Operator objects read as JSON from stdin (a list) against the operator's
// CRD schemas, as @kubernetes-models/prometheus-operator generates them from its Go types.
// Prints one line per object, null or the first error: [null, "...", ...].
import { readFileSync } from "node:fs";
import * as v1 from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const results = JSON.parse(readFileSync(0, "utf8")).map((document) => {
  const model = v1[document.kind];
  if (model === undefined) return `unknown kind ${document.kind}`;
  try {
    new model(document).validate();
    return null;
  } catch (error) {
    return error.message;
  }
});
console.log(JSON.stringify(results));
