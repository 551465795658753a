"""Outputs operators already watch: a Prometheus textfile (:mod:`fleet.outputs.prom`), JUnit XML
(:mod:`fleet.outputs.junit`) and the run's page ``summary.html`` (:mod:`fleet.outputs.html`).  Pure renderers
(report in, text out) and one atomic writer each."""


def write_outputs(kind: str, doc: dict, prom=None, junit=None, reports=None) -> list:
    """--prom and --junit: the Prometheus textfile (audit or verify; a verify's from every GPU's figure in
    ``reports``, ``{host: report}``) and the JUnit XML of a finished run, each written atomically.  Returns the
    lines to tell the operator."""
    from fleet.outputs import junit as junit_out, prom as prom_out

    said = []
    if prom:
        if kind == "audit":
            prom_out.write_audit_textfile(prom, doc)
        else:
            prom_out.write_verify_textfile(prom, doc, reports)
        said.append(f"Prometheus textfile written to {prom}")
    if junit:
        junit_out.write_junit(junit, doc, kind)
        said.append(f"JUnit XML written to {junit}")
    return said
