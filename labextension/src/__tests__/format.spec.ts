import { formatCost, formatMetrics, relativeTime } from '../models/format';

describe('format', () => {
  const now = Date.parse('2025-03-10T12:00:00Z');

  it('says how long ago, coarser with age', () => {
    expect(relativeTime('2025-03-10T11:59:30Z', now)).toBe('just now');
    expect(relativeTime('2025-03-10T11:55:00Z', now)).toBe('5 min ago');
    expect(relativeTime('2025-03-10T09:00:00Z', now)).toBe('3 h ago');
    expect(relativeTime('2025-03-09T10:00:00Z', now)).toBe('yesterday');
    expect(relativeTime('2025-03-06T12:00:00Z', now)).toBe('4 days ago');
    expect(relativeTime('2024-12-01T12:00:00Z', now)).toBe('2024-12-01');
    expect(relativeTime('not a date', now)).toBe('');
  });

  it('shows money and tokens like the notebook widget', () => {
    expect(formatCost(0.00123)).toBe('$0.0012');
    expect(formatMetrics(1000, 234, 0.5)).toBe(
      '1,234 tokens (1,000 in, 234 out) · $0.5000'
    );
  });
});
