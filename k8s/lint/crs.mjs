// Validates the custom resources of rendered manifests against their CRD schemas, as the
// kubernetes-models packages (npm) ship them (types, enums, required fields). Kinds with no
// schema on a registry (Strimzi) are listed as not validated; k8s/README.md says why.
//   node crs.mjs rendered.yaml...
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const MODELS = {
  "keda.sh/v1alpha1/ScaledObject": ScaledObject,
  "keda.sh/v1alpha1/TriggerAuthentication": TriggerAuthentication,
  "monitoring.coreos.com/v1/PodMonitor": PodMonitor,
  "monitoring.coreos.com/v1/PrometheusRule": PrometheusRule,
};
// Built-in API groups: kubeconform validates those.
const BUILTIN = /^(v1|apps\/v1|policy\/v1|autoscaling\/v2|networking\.k8s\.io\/v1)$/;
// Decoded strictly into the operator's Go API types by crdtypes (no npm package has them).
const ELSEWHERE = new Set(["mongodbcommunity.mongodb.com/v1/MongoDBCommunity"]);

let failed = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of parseAllDocuments(readFileSync(file, "utf8"))) {
    if (doc.errors.length) {
      console.error(`${file}: YAML error: ${doc.errors[0].message}`);
      failed++;
      continue;
    }
    const object = doc.toJS();
    if (!object) continue;
    const id = `${object.apiVersion}/${object.kind}`;
    const name = `${file} - ${object.kind} ${object.metadata?.name}`;
    if (BUILTIN.test(object.apiVersion) || ELSEWHERE.has(id)) continue;
    const Model = MODELS[id];
    if (!Model) {
      console.log(`${name}: not validated (no CRD schema from a registry)`);
      continue;
    }
    try {
      new Model(object).validate();
      console.log(`${name}: valid`);
    } catch (error) {
      console.error(`${name}: INVALID: ${error.message}`);
      failed++;
    }
  }
}
process.exit(failed ? 1 : 0);
