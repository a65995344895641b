import type {DType} from './types.js';

export const dtypeSize: Readonly<Record<DType, number>> = {
	F64: 8,
	F32: 4,
	F16: 2,
	BF16: 2,
	F8_E4M3: 1,
	F8_E5M2: 1,
	I64: 8,
	I32: 4,
	I16: 2,
	I8: 1,
	U8: 1,
	BOOL: 1,
};

export function isDType(value: unknown): value is DType {
	return typeof value === 'string' && Object.hasOwn(dtypeSize, value);
}

export function isFloatDType(dtype: DType): boolean {
	return dtype === 'F64' || dtype === 'F32' || dtype === 'F16' || dtype === 'BF16' || dtype === 'F8_E4M3' || dtype === 'F8_E5M2';
}

// A 64K-entry table turns F16 decoding into one indexed load per element, which is
// several times faster than bit-twiddling in JS and allocates nothing per value.
let f16Table: Float32Array | undefined;

function halfToFloat(h: number): number {
	const sign = (h & 0x80_00) === 0 ? 1 : -1;
	const exponent = (h >> 10) & 0x1f;
	const mantissa = h & 0x3_ff;
	if (exponent === 0) {
		return sign * mantissa * 2 ** -24;
	}

	if (exponent === 0x1f) {
		return mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
	}

	return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function getF16Table(): Float32Array {
	if (!f16Table) {
		f16Table = new Float32Array(65_536);
		for (let i = 0; i < 65_536; i++) {
			f16Table[i] = halfToFloat(i);
		}
	}

	return f16Table;
}

function makeF8Table(exponentBits: number, mantissaBits: number, bias: number, finiteOnlyE4M3: boolean): Float32Array {
	const table = new Float32Array(256);
	for (let i = 0; i < 256; i++) {
		const sign = (i & 0x80) === 0 ? 1 : -1;
		const exponent = (i >> mantissaBits) & ((1 << exponentBits) - 1);
		const mantissa = i & ((1 << mantissaBits) - 1);
		const maxExponent = (1 << exponentBits) - 1;
		let value: number;
		if (finiteOnlyE4M3 && exponent === maxExponent && mantissa === (1 << mantissaBits) - 1) {
			value = Number.NaN; // E4M3FN has no infinities; S.1111.111 is NaN
		} else if (!finiteOnlyE4M3 && exponent === maxExponent) {
			value = mantissa === 0 ? sign * Number.POSITIVE_INFINITY : Number.NaN;
		} else if (exponent === 0) {
			value = sign * (mantissa / (1 << mantissaBits)) * 2 ** (1 - bias);
		} else {
			value = sign * (1 + mantissa / (1 << mantissaBits)) * 2 ** (exponent - bias);
		}

		table[i] = value;
	}

	return table;
}

let e4m3Table: Float32Array | undefined;
let e5m2Table: Float32Array | undefined;

/**
 * Decode raw little-endian tensor bytes into float32. `bytes` may be any slice of a Buffer;
 * integer dtypes convert by value, BOOL to 0/1.
 */
export function decodeToFloat32(bytes: Uint8Array, dtype: DType): Float32Array {
	const count = bytes.byteLength / dtypeSize[dtype];
	if (!Number.isInteger(count)) {
		throw new RangeError(`${bytes.byteLength} bytes is not a whole number of ${dtype} values`);
	}

	const out = new Float32Array(count);
	decodeInto(bytes, dtype, out);
	return out;
}

/** Decode into a caller-owned buffer; decodes min(out.length, values in `bytes`) values. */
/**
 * The aligned F16 loop on its own: inside decodeInto's switch V8 could only optimise it on stack
 * (OSR), so every call started in the interpreter, and most LoRA tensors are too small to get
 * past that before they end.
 */
function decodeHalves(halves: Uint16Array, table: Float32Array, out: Float32Array): void {
	for (let i = 0; i < halves.length; i++) {
		out[i] = table[halves[i]!]!;
	}
}

export function decodeInto(bytes: Uint8Array, dtype: DType, out: Float32Array): void {
	const count = Math.min(out.length, Math.floor(bytes.byteLength / dtypeSize[dtype]));
	const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
	switch (dtype) {
		case 'F32': {
			if (bytes.byteOffset % 4 === 0) {
				out.set(new Float32Array(bytes.buffer, bytes.byteOffset, count));
			} else {
				for (let i = 0; i < count; i++) {
					out[i] = view.getFloat32(i * 4, true);
				}
			}

			break;
		}

		case 'F16': {
			const table = getF16Table();
			if (bytes.byteOffset % 2 === 0) {
				decodeHalves(new Uint16Array(bytes.buffer, bytes.byteOffset, count), table, out);
			} else {
				for (let i = 0; i < count; i++) {
					out[i] = table[bytes[2 * i]! | (bytes[(2 * i) + 1]! << 8)]!;
				}
			}

			break;
		}

		case 'BF16': {
			// BF16 is the top half of an F32: shift into a shared integer view of the output.
			const bits = new Uint32Array(out.buffer, out.byteOffset, count);
			for (let i = 0; i < count; i++) {
				bits[i] = (bytes[2 * i]! | (bytes[(2 * i) + 1]! << 8)) << 16;
			}

			break;
		}

		case 'F64': {
			for (let i = 0; i < count; i++) {
				out[i] = view.getFloat64(i * 8, true);
			}

			break;
		}

		case 'F8_E4M3': {
			e4m3Table ??= makeF8Table(4, 3, 7, true);
			for (let i = 0; i < count; i++) {
				out[i] = e4m3Table[bytes[i]!]!;
			}

			break;
		}

		case 'F8_E5M2': {
			e5m2Table ??= makeF8Table(5, 2, 15, false);
			for (let i = 0; i < count; i++) {
				out[i] = e5m2Table[bytes[i]!]!;
			}

			break;
		}

		case 'I64': {
			for (let i = 0; i < count; i++) {
				out[i] = Number(view.getBigInt64(i * 8, true));
			}

			break;
		}

		case 'I32': {
			for (let i = 0; i < count; i++) {
				out[i] = view.getInt32(i * 4, true);
			}

			break;
		}

		case 'I16': {
			for (let i = 0; i < count; i++) {
				out[i] = view.getInt16(i * 2, true);
			}

			break;
		}

		case 'I8': {
			for (let i = 0; i < count; i++) {
				out[i] = view.getInt8(i);
			}

			break;
		}

		case 'U8':
		case 'BOOL': {
			for (let i = 0; i < count; i++) {
				out[i] = bytes[i]!;
			}

			break;
		}
	}
}

/** Round-to-nearest-even float32 → float16 bits (`value` is first rounded to float32). */
export function floatToHalfBits(value: number): number {
	floatScratch[0] = value;
	const x = uintScratch[0]!;
	const sign = (x >>> 16) & 0x80_00;
	const exponent = (x >>> 23) & 0xff;
	let mantissa = x & 0x7f_ff_ff;
	if (exponent === 0xff) {
		return sign | 0x7c_00 | (mantissa === 0 ? 0 : 0x2_00);
	}

	const halfExponent = exponent - 127 + 15;
	if (halfExponent >= 0x1f) {
		return sign | 0x7c_00;
	}

	if (halfExponent <= 0) {
		if (halfExponent < -10) {
			return sign;
		}

		mantissa |= 0x80_00_00;
		const shift = 14 - halfExponent;
		let half = mantissa >>> shift;
		const remainder = mantissa & ((1 << shift) - 1);
		const halfway = 1 << (shift - 1);
		if (remainder > halfway || (remainder === halfway && (half & 1) === 1)) {
			half++;
		}

		return sign | half;
	}

	let half = (halfExponent << 10) | (mantissa >>> 13);
	const remainder = mantissa & 0x1f_ff;
	if (remainder > 0x10_00 || (remainder === 0x10_00 && (half & 1) === 1)) {
		half++; // A carry out of the mantissa correctly bumps the exponent (up to Inf).
	}

	return sign | half;
}

/**
 * float32 → float16 bits for a whole array. Values in the normal float16 range take an inline path
 * on the float32 bits (the same round-to-nearest-even as floatToHalfBits, which handles the rest):
 * resized outputs are written through here, tens of millions of values for an SDXL LoRA.
 */
function encodeHalves(values: Float32Array): Uint16Array {
	const out = new Uint16Array(values.length);
	// A Float32Array is always 4-byte aligned, so its bits can be viewed in place.
	const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
	for (let i = 0; i < bits.length; i++) {
		const x = bits[i]!;
		const exponent = (x >>> 23) & 0xff;
		if (exponent < 113) {
			// Below the normal float16 range (LoRA weights of ~1e-5 are common): |v|·2^24 is exact
			// in a double, and adding and removing 2^52 rounds it to an integer, ties to even, as
			// the FPU does. Tiny values round to a signed zero.
			const value = values[i]!;
			const magnitude = value < 0 ? -value : value;
			out[i] = ((x >>> 16) & 0x80_00) | ((magnitude * 16_777_216) + 4_503_599_627_370_496 - 4_503_599_627_370_496);
		} else if (exponent < 143) {
			// float16 exponents 1…30 are float32 exponents 113…142. Rebias, then round to nearest
			// even by adding 0xfff plus the lowest kept bit before dropping 13 bits; a carry out of
			// the mantissa bumps the exponent (up to Inf), as it should.
			const rebiased = (x & 0x7f_ff_ff_ff) - (112 << 23);
			out[i] = ((x >>> 16) & 0x80_00) | ((rebiased + 0xf_ff + ((x >>> 13) & 1)) >>> 13);
		} else {
			out[i] = floatToHalfBits(values[i]!);
		}
	}

	return out;
}

const floatScratch = new Float32Array(1);
const uintScratch = new Uint32Array(floatScratch.buffer);

/** Round-to-nearest-even float32 → bfloat16 bits. */
export function floatToBf16Bits(value: number): number {
	floatScratch[0] = value;
	const x = uintScratch[0]!;
	if ((x & 0x7f_80_00_00) === 0x7f_80_00_00 && (x & 0x7f_ff_ff) !== 0) {
		return ((x >>> 16) | 0x40) & 0xff_ff; // Keep NaN a NaN
	}

	const rounding = 0x7f_ff + ((x >>> 16) & 1);
	return ((x + rounding) >>> 16) & 0xff_ff;
}

/**
 * Round-to-nearest-even encoding into an 8-bit float with `mantissaBits` and `bias`.
 * E4M3FN (`finiteOnly`) has no infinities: like PyTorch's cast, anything that rounds past 448
 * (and ±Inf) becomes NaN. E5M2 follows IEEE rules (overflow → ±Inf).
 */
function floatToF8Bits(value: number, exponentBits: number, mantissaBits: number, bias: number, finiteOnly: boolean): number {
	const sign = value < 0 || Object.is(value, -0) ? 0x80 : 0;
	const nan = finiteOnly ? 0x7f : 0x7e;
	if (Number.isNaN(value)) {
		return sign | nan;
	}

	const magnitude = Math.abs(value);
	const maxField = (1 << exponentBits) - 1;
	if (magnitude === Number.POSITIVE_INFINITY) {
		return sign | (finiteOnly ? nan : maxField << mantissaBits);
	}

	if (magnitude === 0) {
		return sign;
	}

	const minExponent = 1 - bias;
	let exponent = Math.floor(Math.log2(magnitude));
	// log2 can be off by one near powers of two; fix it exactly.
	if (2 ** exponent > magnitude) {
		exponent--;
	} else if (2 ** (exponent + 1) <= magnitude) {
		exponent++;
	}

	exponent = Math.max(exponent, minExponent);
	const quantum = 2 ** (exponent - mantissaBits);
	const scaled = magnitude / quantum; // Exact: division by a power of two
	let rounded = Math.floor(scaled);
	const fraction = scaled - rounded;
	if (fraction > 0.5 || (fraction === 0.5 && (rounded & 1) === 1)) {
		rounded++;
	}

	const implicit = 1 << mantissaBits;
	if (rounded >= 2 * implicit) {
		rounded /= 2;
		exponent++;
	}

	let field: number;
	let mantissa: number;
	if (rounded >= implicit) {
		field = exponent + bias;
		mantissa = rounded - implicit;
	} else {
		field = 0;
		mantissa = rounded;
	}

	if (finiteOnly) {
		if (field > maxField || (field === maxField && mantissa === implicit - 1)) {
			return sign | nan;
		}
	} else if (field >= maxField) {
		return sign | (maxField << mantissaBits);
	}

	return sign | (field << mantissaBits) | mantissa;
}

/** Round-to-nearest-even → F8 E4M3FN bits (out of range and ±Inf → NaN, as PyTorch does). */
export function floatToE4m3Bits(value: number): number {
	return floatToF8Bits(value, 4, 3, 7, true);
}

/** Round-to-nearest-even → F8 E5M2 bits (IEEE-style: overflow → ±Inf). */
export function floatToE5m2Bits(value: number): number {
	return floatToF8Bits(value, 5, 2, 15, false);
}

/** Encode float32 values into the raw little-endian bytes of `dtype` (float dtypes only). */
export function encodeFromFloat32(values: Float32Array, dtype: DType): Uint8Array {
	switch (dtype) {
		case 'F32': {
			return new Uint8Array(values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength));
		}

		case 'F16': {
			return new Uint8Array(encodeHalves(values).buffer);
		}

		case 'BF16': {
			const out = new Uint16Array(values.length);
			for (let i = 0; i < values.length; i++) {
				out[i] = floatToBf16Bits(values[i]!);
			}

			return new Uint8Array(out.buffer);
		}

		case 'F64': {
			const out = new Float64Array(values.length);
			out.set(values);
			return new Uint8Array(out.buffer);
		}

		case 'F8_E4M3':
		case 'F8_E5M2': {
			const out = new Uint8Array(values.length);
			const encode = dtype === 'F8_E4M3' ? floatToE4m3Bits : floatToE5m2Bits;
			for (let i = 0; i < values.length; i++) {
				out[i] = encode(values[i]!);
			}

			return out;
		}

		default: {
			throw new Error(`cannot encode float values as ${dtype}`);
		}
	}
}
