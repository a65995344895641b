// Seeded random numbers for test fixtures, so a failure reproduces with the same data.

/** A deterministic uniform generator on [0, 1) (mulberry32). */
export function rng(seed: number): () => number {
	let state = seed >>> 0;
	return () => {
		state = (state + 0x6D_2B_79_F5) >>> 0;
		let t = state;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
	};
}

/** `count` orthonormal float64 vectors of length m: Gram–Schmidt, twice, on random vectors. */
export function orthonormal(random: () => number, m: number, count: number): Float64Array[] {
	const out: Float64Array[] = [];
	while (out.length < count) {
		const v = Float64Array.from({length: m}, () => random() - 0.5);
		for (let pass = 0; pass < 2; pass++) {
			for (const q of out) {
				let c = 0;
				for (let i = 0; i < m; i++) {
					c += v[i]! * q[i]!;
				}

				for (let i = 0; i < m; i++) {
					v[i]! -= c * q[i]!;
				}
			}
		}

		const norm = Math.hypot(...v);
		out.push(v.map(x => x / norm));
	}

	return out;
}
