"""PromQL over the stored metric history: parse (``promql_parser``), load raw samples
(storage), evaluate with Prometheus' semantics (engine, functions, aggregations, binary),
and serve Prometheus' HTTP API (service, handlers). See docs/promql.md."""
