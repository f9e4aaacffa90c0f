"""Size of the JavaScript SDK as pages download it: raw, minified (rjsmin) and minified + gzip.

The budget is 30 KB for the minified and gzipped file (what a page pays on its first visit; the server sends the
raw file gzipped, shown too). The ratio is the gzipped minified size over the budget: at most 1.0.

    python bench/sdk_size.py
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import rjsmin

SDK = Path(__file__).resolve().parents[1] / "src" / "rejoinder" / "web" / "sdk" / "alli.js"
BUDGET_BYTES = 30 * 1024


def kb(size: int) -> str:
    return f"{size / 1024:6.1f} KB"


def main() -> int:
    raw = SDK.read_bytes()
    minified = rjsmin.jsmin(raw.decode()).encode()
    gzipped_raw = gzip.compress(raw, compresslevel=9, mtime=0)
    gzipped_min = gzip.compress(minified, compresslevel=9, mtime=0)
    ratio = len(gzipped_min) / BUDGET_BYTES
    print(f"alli.js raw              {kb(len(raw))}")
    print(f"alli.js raw + gzip       {kb(len(gzipped_raw))}   (what /sdk/alli.js sends)")
    print(f"alli.js minified         {kb(len(minified))}   (rjsmin)")
    print(f"alli.js minified + gzip  {kb(len(gzipped_min))}")
    print(
        f"budget                   {kb(BUDGET_BYTES)}   ratio {ratio:.2f} ({'ok' if ratio <= 1 else 'OVER BUDGET'})"
    )
    return 0 if ratio <= 1 else 1


if __name__ == "__main__":
    sys.exit(main())
