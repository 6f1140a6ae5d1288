// Package configs holds the deployment files of psagate: example.toml (used
// by `make run`), the systemd unit psagate.service, the Prometheus alerting
// rules prometheus-alerts.yml and the Grafana dashboard
// grafana-dashboard.json. It has no code; its tests check that these files
// parse, that the unit keeps its hardening, and that every metric the alerts
// and the dashboard query is one psagate actually exports.
package configs
