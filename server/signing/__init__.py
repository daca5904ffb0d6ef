"""Digital signatures (PAdES) on the council's documents, and checks of signed uploads.

``keys`` opens a signer's key (a PKCS#11 token or HSM, or a PKCS#12 file); ``pades`` signs
a PDF with it (PAdES B-LT: an RFC 3161 timestamp and the certificates, OCSP responses and
CRLs needed to verify it years later); ``verify`` reports the signatures of a PDF;
``trust`` reads the operator's trust roots. All of it is blocking (PKCS#11, HTTP to the CA
and the TSA, PDF parsing): call it in a worker thread, never on the event loop.
"""
