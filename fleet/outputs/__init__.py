"""Outputs operators already watch: a Prometheus textfile (:mod:`fleet.outputs.prom`), JUnit XML
(:mod:`fleet.outputs.junit`) and the run's page ``summary.html`` (:mod:`fleet.outputs.html`).  Pure renderers
(report in, text out) and one atomic writer each."""
