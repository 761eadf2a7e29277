"""The spending chart in the reconciliation asset's metadata."""

import base64
import re
import xml.etree.ElementTree as ET

from assets.charts import as_markdown_image, spending_svg


def test_chart_draws_each_project_and_source_to_scale():
    svg = spending_svg([("2023-GT-01", "部拨经费", 10_000_000, 5_000_000), ("2023-GT-01", "市级配套", 10_000_000, 10_000_000),
                        ("2023-ST-01", "市级经费", 10_000_000, None)])
    root = ET.fromstring(svg)  # well-formed XML
    ns = {"s": "http://www.w3.org/2000/svg"}
    bars = root.findall("s:rect", ns)
    titles = [b.find("s:title", ns).text for b in bars if b.find("s:title", ns) is not None]
    assert titles == ["2023-GT-01 部拨经费 支出 50,000.00 元", "2023-GT-01 市级配套 支出 100,000.00 元"]
    widths = [float(b.get("width")) for b in bars if b.find("s:title", ns) is not None]
    assert abs(widths[1] - 2 * widths[0]) < 0.2  # to scale
    assert "未对账" in svg  # the unreconciled project is said, not drawn as zero


def test_markdown_image_embeds_the_svg():
    md = as_markdown_image("<svg xmlns='http://www.w3.org/2000/svg'/>", "图")
    payload = re.fullmatch(r"!\[图\]\(data:image/svg\+xml;base64,(.+)\)", md).group(1)
    assert base64.b64decode(payload).decode() == "<svg xmlns='http://www.w3.org/2000/svg'/>"
