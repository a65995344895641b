// Deterministic randomness for the sample generator: a small counter-based generator (sfc32)
// seeded from a string label, so every module's numbers depend only on (seed, module name) and
// the same call writes the same bytes on every run and machine.

function hashLabel(label: string, seed: number): number {
	// FNV-1a over UTF-16 units, then a murmur3-style finaliser.
	let hash = (0x81_1c_9d_c5 ^ seed) >>> 0;
	for (let i = 0; i < label.length; i++) {
		hash ^= label.charCodeAt(i);
		hash = Math.imul(hash, 0x01_00_01_93) >>> 0;
	}

	hash ^= hash >>> 16;
	hash = Math.imul(hash, 0x85_eb_ca_6b) >>> 0;
	hash ^= hash >>> 13;
	hash = Math.imul(hash, 0xc2_b2_ae_35) >>> 0;
	hash ^= hash >>> 16;
	return hash >>> 0;
}

function splitmix32(state: number): [number, number] {
	const next = (state + 0x9e_37_79_b9) >>> 0;
	let z = next;
	z = Math.imul(z ^ (z >>> 16), 0x85_eb_ca_6b) >>> 0;
	z = Math.imul(z ^ (z >>> 13), 0xc2_b2_ae_35) >>> 0;
	return [next, (z ^ (z >>> 16)) >>> 0];
}

export class SampleRandom {
	private a: number;
	private b: number;
	private c: number;
	private d: number;
	private spare: number | undefined;

	constructor(seed: number, label: string) {
		let state = hashLabel(label, seed >>> 0);
		const words: number[] = [];
		for (let i = 0; i < 4; i++) {
			const [next, value] = splitmix32(state);
			state = next;
			words.push(value);
		}

		[this.a, this.b, this.c, this.d] = words as [number, number, number, number];
		for (let i = 0; i < 12; i++) {
			this.nextUint32();
		}
	}

	nextUint32(): number {
		// sfc32 (Chris Doty-Humphrey's small fast chaotic generator).
		const t = (((this.a + this.b) >>> 0) + this.d) >>> 0;
		this.d = (this.d + 1) >>> 0;
		this.a = this.b ^ (this.b >>> 9);
		this.b = (this.c + (this.c << 3)) >>> 0;
		this.c = ((this.c << 21) | (this.c >>> 11)) >>> 0;
		this.c = (this.c + t) >>> 0;
		return t;
	}

	/** Uniform in [0, 1). */
	next(): number {
		return this.nextUint32() / 0x1_00_00_00_00;
	}

	uniform(low: number, high: number): number {
		return low + ((high - low) * this.next());
	}

	/** Standard normal (Box–Muller; the second value of each pair is kept for the next call). */
	gaussian(): number {
		if (this.spare !== undefined) {
			const value = this.spare;
			this.spare = undefined;
			return value;
		}

		let u = this.next();
		while (u === 0) {
			u = this.next();
		}

		const radius = Math.sqrt(-2 * Math.log(u));
		const angle = 2 * Math.PI * this.next();
		this.spare = radius * Math.sin(angle);
		return radius * Math.cos(angle);
	}

	/**
	 * Fill with N(0, scale²) values: Marsaglia's polar method with the generator state in locals,
	 * several times faster than calling gaussian() per value (the samples need ~10⁸ of them).
	 */
	fillGaussian(out: Float64Array, scale = 1): Float64Array {
		let {a, b, c, d} = this;
		const inverse = 1 / 0x80_00_00_00;
		let i = 0;
		const n = out.length;
		while (i < n) {
			let t = (((a + b) >>> 0) + d) >>> 0;
			d = (d + 1) >>> 0;
			a = b ^ (b >>> 9);
			b = (c + (c << 3)) >>> 0;
			c = ((c << 21) | (c >>> 11)) >>> 0;
			c = (c + t) >>> 0;
			const u = (t * inverse) - 1;
			t = (((a + b) >>> 0) + d) >>> 0;
			d = (d + 1) >>> 0;
			a = b ^ (b >>> 9);
			b = (c + (c << 3)) >>> 0;
			c = ((c << 21) | (c >>> 11)) >>> 0;
			c = (c + t) >>> 0;
			const v = (t * inverse) - 1;
			const s = (u * u) + (v * v);
			if (s >= 1 || s === 0) {
				continue;
			}

			const factor = scale * Math.sqrt(-2 * Math.log(s) / s);
			out[i++] = u * factor;
			if (i < n) {
				out[i++] = v * factor;
			}
		}

		this.a = a;
		this.b = b;
		this.c = c;
		this.d = d;
		return out;
	}

	shuffle<T>(items: T[]): T[] {
		for (let i = items.length - 1; i > 0; i--) {
			const j = Math.floor(this.next() * (i + 1));
			[items[i], items[j]] = [items[j]!, items[i]!];
		}

		return items;
	}
}
