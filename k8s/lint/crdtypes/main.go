// crdtypes decodes custom resources strictly into their operators' own Go API types (the
// types their CRD schemas are generated from): an unknown field or a wrong type fails.
// For the MongoDB Community operator this is the only schema on a registry (the Go module
// proxy); for the Prometheus Operator it adds the unknown-field check that the npm
// validators (crs.mjs) lack. Other kinds are left to kubeconform and crs.mjs.
//
//	crdtypes rendered.yaml...
package main

import (
	"bytes"
	"fmt"
	"os"

	mdbv1 "github.com/mongodb/mongodb-kubernetes-operator/api/v1"
	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"sigs.k8s.io/yaml"
)

// typeMeta reads only what picks the Go type.
type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
}

func target(meta typeMeta) any {
	switch meta.APIVersion + "/" + meta.Kind {
	case "mongodbcommunity.mongodb.com/v1/MongoDBCommunity":
		return &mdbv1.MongoDBCommunity{}
	case "monitoring.coreos.com/v1/PodMonitor":
		return &monitoringv1.PodMonitor{}
	case "monitoring.coreos.com/v1/PrometheusRule":
		return &monitoringv1.PrometheusRule{}
	}
	return nil
}

func main() {
	failed := 0
	for _, file := range os.Args[1:] {
		data, err := os.ReadFile(file)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		// kustomize build writes documents separated by "---" lines.
		for _, doc := range bytes.Split(data, []byte("\n---\n")) {
			var meta typeMeta
			if err := yaml.Unmarshal(doc, &meta); err != nil {
				fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
				failed++
				continue
			}
			object := target(meta)
			if object == nil {
				continue
			}
			name := fmt.Sprintf("%s - %s %s", file, meta.Kind, meta.Metadata.Name)
			if err := yaml.UnmarshalStrict(doc, object); err != nil {
				fmt.Fprintf(os.Stderr, "%s: INVALID (operator API types): %v\n", name, err)
				failed++
				continue
			}
			fmt.Printf("%s: valid (operator API types, strict)\n", name)
		}
	}
	if failed > 0 {
		os.Exit(1)
	}
}
