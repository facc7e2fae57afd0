/** Joins class names, skipping empty ones. */
export const cx = (...names: Array<string | false | null | undefined>): string => names.filter(Boolean).join(' ');

/** `1234` → `1,234` in the user's locale. */
export const formatNumber = (n: number): string => n.toLocaleString();

/** An amount in the smallest currency unit (cents, or yen for zero-decimal currencies) as a price. */
export function formatPrice(amount: number, currency: string): string {
  const format = new Intl.NumberFormat(undefined, { style: 'currency', currency: currency.toUpperCase() });
  return format.format(amount / 10 ** (format.resolvedOptions().maximumFractionDigits ?? 2));
}
