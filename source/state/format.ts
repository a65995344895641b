// Number and time formatting shared by the list, the detail tabs and compare.

export function formatBytes(bytes: number): string {
	if (!Number.isFinite(bytes) || bytes < 0) {
		return '?';
	}

	if (bytes < 1024) {
		return `${bytes} B`;
	}

	const units = ['KiB', 'MiB', 'GiB', 'TiB'];
	let value = bytes / 1024;
	let unit = 0;
	while (value >= 1024 && unit < units.length - 1) {
		value /= 1024;
		unit++;
	}

	return `${value >= 100 ? value.toFixed(0) : value.toFixed(1)} ${units[unit]}`;
}

/** Relative age for the last week ("5m ago"), then the date. */
export function formatAge(mtimeMs: number, now: number): string {
	const seconds = Math.max(0, (now - mtimeMs) / 1000);
	if (seconds < 60) {
		return `${Math.floor(seconds)}s ago`;
	}

	if (seconds < 3600) {
		return `${Math.floor(seconds / 60)}m ago`;
	}

	if (seconds < 86_400) {
		return `${Math.floor(seconds / 3600)}h ago`;
	}

	if (seconds < 7 * 86_400) {
		return `${Math.floor(seconds / 86_400)}d ago`;
	}

	return formatDate(mtimeMs);
}

export function formatDate(ms: number): string {
	const date = new Date(ms);
	const pad = (n: number): string => String(n).padStart(2, '0');
	return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

export function formatDateTime(ms: number): string {
	const date = new Date(ms);
	const pad = (n: number): string => String(n).padStart(2, '0');
	return `${formatDate(ms)} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** Four significant digits without exponent in the usual range; exponent for tiny and huge values. */
export function formatNumber(value: number | null | undefined, digits = 4): string {
	if (value === null || value === undefined) {
		return '-';
	}

	if (!Number.isFinite(value)) {
		return String(value);
	}

	if (value === 0) {
		return '0';
	}

	const magnitude = Math.abs(value);
	if (magnitude >= 1e-3 && magnitude < 1e6) {
		if (Number.isInteger(value) && magnitude < 1e6) {
			return String(value);
		}

		return String(Number(value.toPrecision(digits)));
	}

	return value.toExponential(digits - 1).replace(/\.?0+e/, 'e');
}

/** Signed difference with an explicit plus. */
export function formatDelta(value: number | null | undefined, digits = 4): string {
	if (value === null || value === undefined || !Number.isFinite(value)) {
		return formatNumber(value, digits);
	}

	return value > 0 ? `+${formatNumber(value, digits)}` : formatNumber(value, digits);
}

export function formatPercent(fraction: number): string {
	if (!Number.isFinite(fraction)) {
		return '-';
	}

	const percent = fraction * 100;
	return `${Math.abs(percent) >= 10 ? percent.toFixed(0) : percent.toFixed(1)}%`;
}
