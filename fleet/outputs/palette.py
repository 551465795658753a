"""One palette for summary.html's page and its plots: each colour means one thing wherever it appears."""

HOST_COLOUR = "#1c7ed6"  # an unflagged host
STRAGGLER_COLOUR = "#e8590c"  # a straggler, a failing check: badge, figure cell, plot point, line
REGRESSION_COLOUR = "#7048e8"  # a regression, a warning check: badge, figure cell, plot point, line
EXCLUDED_COLOUR = "#cf222e"  # a failed or errored host: drawn beside the distribution, never in its median
MEDIAN_COLOUR = "#495057"
REFERENCE_COLOUR = "#2b8a3e"
STATUS_COLOURS = {  # status -> (text, background)
    "pass": ("#1a7f37", "#dafbe1"),
    "warn": ("#9a6700", "#fff8c5"),
    "skipped": ("#57606a", "#f6f8fa"),
    "fail": ("#cf222e", "#ffebe9"),
    "error": ("#8250df", "#fbefff"),
    "unreachable": ("#57606a", "#eaeef2"),
}
# A device's lines under sustained load (none orange or violet: those mark a failing or warning check).
DEVICE_COLOURS = ("#1c7ed6", "#0ca678", "#495057", "#1098ad", "#74b816", "#1864ab", "#2b8a3e", "#868e96")
DTYPE_STYLES = ("-", "--", ":", "-.")
