/** The value seen most often (the first to reach the top count wins a tie); undefined when empty. */
export function mostCommon<T>(values: readonly T[]): T | undefined {
	const counts = new Map<T, number>();
	let best: T | undefined;
	let bestCount = 0;
	for (const value of values) {
		const count = (counts.get(value) ?? 0) + 1;
		counts.set(value, count);
		if (count > bestCount) {
			best = value;
			bestCount = count;
		}
	}

	return best;
}
