"""Outputs operators already watch: a Prometheus textfile (:mod:`fleet.outputs.prom`) and JUnit XML
(:mod:`fleet.outputs.junit`).  Pure renderers (report in, text out) and one atomic writer each."""
