"""What the browser tests check on the page (JavaScript predicates for Playwright) and the
agent code that makes the outputs they check (a wide table, a tall image)."""

from __future__ import annotations


def tall_image_code(height: int) -> str:
    """Agent Python that displays a PNG ``height`` px tall (made with zlib: no PIL needed)."""
    return (
        "import struct, zlib\n"
        "from IPython.display import Image, display\n"
        "def chunk(kind, data):\n"
        "    body = kind + data\n"
        "    return struct.pack('>I', len(data)) + body + struct.pack('>I', zlib.crc32(body))\n"
        f"width, height = 24, {height}\n"
        "rows = b''.join(b'\\x00' + b'\\x30\\x80\\xc0' * width for _ in range(height))\n"
        "png = (b'\\x89PNG\\r\\n\\x1a\\n'\n"
        "       + chunk(b'IHDR', struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0))\n"
        "       + chunk(b'IDAT', zlib.compress(rows)) + chunk(b'IEND', b''))\n"
        "display(Image(data=png))\n"
    )


WIDE_TABLE_CODE = (
    "from IPython.display import HTML, display\n"
    "head = ''.join(f'<th>column_number_{i}</th>' for i in range(14))\n"
    "body = ''.join(f'<td>{1234567.891 * (i + 1):.3f}</td>' for i in range(14))\n"
    "display(HTML(f'<table><thead><tr>{head}</tr></thead><tbody><tr>{body}</tr></tbody></table>'))\n"
)

# A table cell on one line: as tall as one line of its text (not a letter per line).
ONE_LINE_CELLS = """table => Array.from(table.querySelectorAll('td, th')).every(cell => {
  const size = parseFloat(getComputedStyle(cell).fontSize);
  return cell.getBoundingClientRect().height < 3 * size;
})"""
# The table's box scrolls sideways (it is wider than the row).
SCROLLS_SIDEWAYS = """table => {
  const box = table.closest('.jp-convo-rich');
  return box.scrollWidth > box.clientWidth;
}"""
IMAGE_LOADED = "img => img.complete && img.naturalHeight > 0"
AT_END = "node => node.scrollHeight - node.scrollTop - node.clientHeight < 2"
