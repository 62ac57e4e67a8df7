"""WCAG contrast of the text on screen, measured in the page (computed colours).

``low_contrast(locator)`` answers every text under the locator whose contrast with the
background it sits on is below WCAG AA (4.5:1; 3:1 for large text), with the colours
found. Backgrounds are composited from the element up to the page (tints and alpha
included); disabled controls are exempt, as WCAG says.
"""

from __future__ import annotations

from typing import Any

AA_NORMAL = 4.5
AA_LARGE = 3.0

_SCRIPT = r"""
(root, limits) => {
  const canvas = document.createElement('canvas');
  canvas.width = canvas.height = 1;
  const paint = canvas.getContext('2d', { willReadFrequently: true });
  // Any CSS colour (rgb(), color(srgb ...) from color-mix, names) as [r, g, b, a] 0..255/0..1.
  const parse = text => {
    const number = '([\\d.e-]+)';
    const srgb = text.match(
      new RegExp(`^color\\(srgb ${number} ${number} ${number}(?: / ${number})?\\)$`)
    );
    if (srgb) {
      return [+srgb[1] * 255, +srgb[2] * 255, +srgb[3] * 255, srgb[4] === undefined ? 1 : +srgb[4]];
    }
    const rgb = text.match(/^rgba?\(([\d.]+),? ([\d.]+),? ([\d.]+)(?:[,/] ?([\d.]+))?\)$/);
    if (rgb) {
      return [+rgb[1], +rgb[2], +rgb[3], rgb[4] === undefined ? 1 : +rgb[4]];
    }
    paint.clearRect(0, 0, 1, 1);
    paint.fillStyle = text;
    paint.fillRect(0, 0, 1, 1);
    const [r, g, b, a] = paint.getImageData(0, 0, 1, 1).data;
    return [r, g, b, a / 255];
  };
  const over = (top, bottom) => {
    const a = top[3];
    return [0, 1, 2].map(i => top[i] * a + bottom[i] * (1 - a)).concat([1]);
  };
  const background = node => {
    const layers = [];
    for (let n = node; n; n = n.parentElement) {
      const colour = parse(getComputedStyle(n).backgroundColor);
      if (colour[3] > 0) {
        layers.push(colour);
        if (colour[3] >= 1) break;
      }
    }
    let result = [255, 255, 255, 1];
    for (const layer of layers.reverse()) result = over(layer, result);
    return result;
  };
  const luminance = c => {
    const [r, g, b] = c.slice(0, 3).map(v => {
      v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (a, b) => {
    const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x);
    return (hi + 0.05) / (lo + 0.05);
  };
  const failures = [];
  const nodes = [root, ...root.querySelectorAll('*')];
  for (const node of nodes) {
    const text = Array.from(node.childNodes)
      .filter(c => c.nodeType === Node.TEXT_NODE)
      .map(c => c.textContent.trim())
      .join(' ')
      .trim();
    if (!text || !node.getClientRects().length) continue;
    if (node.closest('button:disabled, [hidden], svg')) continue;
    const style = getComputedStyle(node);
    if (style.visibility === 'hidden') continue;
    const back = background(node);
    const fore = over(parse(style.color), back);
    const size = parseFloat(style.fontSize);
    const bold = Number(style.fontWeight) >= 700;
    const large = size >= 24 || (bold && size >= 18.66);
    const value = ratio(fore, back);
    const need = large ? limits.large : limits.normal;
    if (value < need) {
      const where = node.className || node.tagName;
      const under = back.slice(0, 3).map(Math.round).join(',');
      failures.push(
        `${value.toFixed(2)}:1 < ${need} "${text.slice(0, 40)}" (${where}: ` +
        `${style.color} on rgb(${under}))`
      );
    }
  }
  return failures;
}
"""


def low_contrast(locator: Any) -> list[str]:
    """Texts under ``locator`` below WCAG AA, described with their colours."""
    return list(locator.evaluate(_SCRIPT, {"normal": AA_NORMAL, "large": AA_LARGE}))
