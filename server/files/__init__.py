"""Files and PDF documents: safe upload, page rendering, per-reader stamped copies."""
