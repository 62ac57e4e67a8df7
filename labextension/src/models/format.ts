/**
 * How numbers and times read in the panel (English, like the rest of the UI).
 */

const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** "just now", "5 min ago", "3 h ago", "yesterday", "4 days ago", else the date. */
export function relativeTime(iso: string, now: number = Date.now()): string {
  const then = Date.parse(iso);
  if (Number.isNaN(then)) {
    return '';
  }
  const elapsed = now - then;
  if (elapsed < 45_000) {
    return 'just now';
  }
  if (elapsed < HOUR) {
    return `${Math.max(1, Math.round(elapsed / MINUTE))} min ago`;
  }
  if (elapsed < DAY) {
    return `${Math.floor(elapsed / HOUR)} h ago`;
  }
  const days = Math.floor(elapsed / DAY);
  if (days === 1) {
    return 'yesterday';
  }
  if (days < 30) {
    return `${days} days ago`;
  }
  return new Date(then).toISOString().slice(0, 10);
}

/** Dollars with four decimals, as the notebook widget shows them. */
export function formatCost(cost: number): string {
  return `$${(cost || 0).toFixed(4)}`;
}

/** "1,234 tokens (1,000 in, 234 out) · $0.0012". */
export function formatMetrics(
  promptTokens: number,
  completionTokens: number,
  cost: number
): string {
  const total = promptTokens + completionTokens;
  const n = (value: number) => value.toLocaleString('en-US');
  return `${n(total)} tokens (${n(promptTokens)} in, ${n(completionTokens)} out) · ${formatCost(cost)}`;
}
