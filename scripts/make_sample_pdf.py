#!/usr/bin/env python3
"""Writes data/samples/annual-report.pdf: a small two-page text PDF, by hand (no
library), so that the bundled samples include a PDF with pages."""
import pathlib

PAGES = [
    ["Nordlys Ferries annual report 2025",
     "",
     "Nordlys Ferries is headquartered in Tromso and runs six ferry routes",
     "along the northern coast of Norway.",
     "",
     "In 2025 the company carried 1.4 million passengers, eight percent",
     "more than in the year before. Revenue grew to 412 million kroner."],
    ["Fleet and outlook",
     "",
     "The company took delivery of its first battery-electric ferry, the",
     "Polarstjerne, in March 2025. It was built at the Westcon yard and",
     "charges in twelve minutes at each end of the Skjervoy route.",
     "",
     "The chief executive, Ingrid Aasen, expects two more electric ferries",
     "to enter service by the end of 2027."],
]


def pdf(pages, title):
    objects = ["<< /Type /Catalog /Pages 2 0 R >>"]
    n = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>")
    font = 3 + 2 * n
    for i, lines in enumerate(pages):
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
                       f"/Resources << /Font << /F1 {font} 0 R >> >> >>")
        body = "BT /F1 12 Tf 72 720 Td 16 TL\n" + "".join(f"({l}) Tj T*\n" for l in lines) + "ET\n"
        objects.append(f"<< /Length {len(body)} >>\nstream\n{body}endstream")
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    objects.append(f"<< /Title ({title}) >>")
    out = "%PDF-1.4\n"
    offsets = []
    for i, obj in enumerate(objects):
        offsets.append(len(out))
        out += f"{i + 1} 0 obj\n{obj}\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n" + "".join(f"{o:010d} 00000 n \n" for o in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R /Info {len(objects)} 0 R >>\nstartxref\n{xref}\n%%EOF\n"
    return out.encode("latin-1")


if __name__ == "__main__":
    path = pathlib.Path(__file__).resolve().parent.parent / "data" / "samples" / "annual-report.pdf"
    path.write_bytes(pdf(PAGES, "Nordlys Ferries annual report 2025"))
    print(path)
