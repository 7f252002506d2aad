"""Inline SVG plot of values with intervals, shared by the FairnessGate's report and the model card.

Below the components (like features.py): two components draw the same plot, and
no component imports a sibling (tests/test_import_graph.py).
"""

import html
from typing import Optional, Sequence, Tuple, List

# A check's status (fairness.py's verdict words) -> its colour; None: a plain value.
STATUS_COLORS = {'pass': '#2e7d32', 'fail': '#c62828', 'insufficient_evidence': '#ef6c00',
                 'not_measurable': '#6d6d6d', None: '#1f4e9a'}


def _e(value) -> str:
  return html.escape(str(value), quote=True)


def interval_plot(items: List[Tuple[str, Optional[float], Optional[Sequence[float]], Optional[str]]],
                  band: Optional[Sequence[float]] = None, reference: Optional[float] = None,
                  domain: Optional[Tuple[float, float]] = None, width: int = 720,
                  axis_label: str = '') -> str:
  """Inline SVG: one row per (label, value, [low, high], status), a shaded allowed band.

  `domain`: the axis runs exactly over it (rates: (0, 1)); values and intervals
  outside are drawn at its edge. Without it the axis spans the numbers plus 5%,
  never past 0, -1 or 1 where the numbers stay within them (a rate's interval
  ending at 0 does not put -0.05 on the axis). `axis_label`: a line under the
  axis saying what it measures (e.g. that a ratio may exceed 1).
  """
  label_width, row_height, top, bottom = 230, 17, 8, 26 + (14 if axis_label else 0)
  plot_width = width - label_width - 20
  numbers = [v for _, v, _, _ in items if v is not None]
  numbers += [b for _, _, iv, _ in items if iv for b in iv if b is not None]
  numbers += list(band or []) + ([reference] if reference is not None else [])
  low, high = domain or ((min(numbers), max(numbers)) if numbers else (0.0, 1.0))
  if not domain:
    if high - low < 1e-9:
      low, high = low - 0.5, high + 0.5
    pad = (high - low) * 0.05
    low = max([low - pad] + [edge for edge in (-1.0, 0.0) if low >= edge])
    high = min([high + pad] + [edge for edge in (0.0, 1.0) if high <= edge])

  def x(value: float) -> float:
    return label_width + (min(max(value, low), high) - low) / (high - low) * plot_width

  height = top + bottom + row_height * len(items)
  parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'role="img">']
  if band:
    parts.append(f'<rect x="{x(band[0]):.1f}" y="{top}" width="{x(band[1]) - x(band[0]):.1f}" '
                 f'height="{row_height * len(items)}" fill="#e8f5e9"/>')
    for edge in band:
      parts.append(f'<line x1="{x(edge):.1f}" x2="{x(edge):.1f}" y1="{top}" '
                   f'y2="{top + row_height * len(items)}" stroke="#2e7d32" stroke-dasharray="3,3"/>')
  if reference is not None:
    parts.append(f'<line x1="{x(reference):.1f}" x2="{x(reference):.1f}" y1="{top}" '
                 f'y2="{top + row_height * len(items)}" stroke="#999"/>')
  for i, (label, value, interval, status) in enumerate(items):
    y = top + row_height * i + row_height / 2
    color = STATUS_COLORS.get(status, STATUS_COLORS[None])
    parts.append(f'<text x="{label_width - 6}" y="{y + 4:.1f}" text-anchor="end">{_e(label)}</text>')
    if interval and interval[0] is not None:
      parts.append(f'<line x1="{x(interval[0]):.1f}" x2="{x(interval[1]):.1f}" y1="{y:.1f}" '
                   f'y2="{y:.1f}" stroke="{color}" stroke-width="2"/>')
    if value is not None:
      parts.append(f'<circle cx="{x(value):.1f}" cy="{y:.1f}" r="4" fill="{color}"/>')
    else:
      parts.append(f'<text x="{label_width + 4}" y="{y + 4:.1f}" fill="#999">not measured</text>')
  axis_y = top + row_height * len(items) + 4
  parts.append(f'<line x1="{label_width}" x2="{label_width + plot_width}" y1="{axis_y}" '
               f'y2="{axis_y}" stroke="#444"/>')
  for k in range(6):
    tick = low + (high - low) * k / 5
    parts.append(f'<text x="{x(tick):.1f}" y="{axis_y + 14}" text-anchor="middle">'
                 f'{tick:.2f}</text>')
  if axis_label:
    parts.append(f'<text x="{label_width + plot_width / 2:.1f}" y="{axis_y + 30}" '
                 f'text-anchor="middle" class="axis-label">{_e(axis_label)}</text>')
  parts.append('</svg>')
  return ''.join(parts)
