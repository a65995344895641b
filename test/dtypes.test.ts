import assert from 'node:assert/strict';
import test from 'node:test';
import {
	decodeToFloat32,
	dtypeSize,
	encodeFromFloat32,
	floatToBf16Bits,
	floatToE4m3Bits,
	floatToE5m2Bits,
	floatToHalfBits,
} from '../source/lora/dtypes.js';

// Independent references: each minifloat value from its IEEE-style definition
// (-1)^s · 2^(e − bias) · (1 + m/2^M), subnormal (-1)^s · 2^(1 − bias) · m/2^M, written here
// as integer significand × power of two so it shares no code or expression with the decoder.
function minifloatReference(bits: number, exponentBits: number, mantissaBits: number, bias: number, style: 'ieee' | 'fn'): number {
	const total = 1 + exponentBits + mantissaBits;
	const negative = ((bits >> (total - 1)) & 1) === 1;
	const exponent = (bits >> mantissaBits) & ((1 << exponentBits) - 1);
	const mantissa = bits & ((1 << mantissaBits) - 1);
	const maxExponent = (1 << exponentBits) - 1;
	let magnitude: number;
	if (style === 'ieee' && exponent === maxExponent) {
		if (mantissa !== 0) {
			return Number.NaN;
		}

		magnitude = Number.POSITIVE_INFINITY;
	} else if (style === 'fn' && exponent === maxExponent && mantissa === (1 << mantissaBits) - 1) {
		return Number.NaN;
	} else if (exponent === 0) {
		magnitude = mantissa * (2 ** (1 - bias - mantissaBits));
	} else {
		magnitude = ((1 << mantissaBits) + mantissa) * (2 ** (exponent - bias - mantissaBits));
	}

	return negative ? -magnitude : magnitude;
}

const half = (bits: number): number => minifloatReference(bits, 5, 10, 15, 'ieee');
const e4m3 = (bits: number): number => minifloatReference(bits, 4, 3, 7, 'fn');
const e5m2 = (bits: number): number => minifloatReference(bits, 5, 2, 15, 'ieee');

function sameValue(actual: number, expected: number, label: string): void {
	if (Number.isNaN(expected)) {
		assert.ok(Number.isNaN(actual), `${label}: expected NaN, got ${actual}`);
	} else {
		assert.ok(Object.is(actual, expected), `${label}: expected ${expected}, got ${actual}`);
	}
}

test('F16 decodes all 65,536 bit patterns like the reference formula', () => {
	const bytes = new Uint8Array(65_536 * 2);
	for (let bits = 0; bits < 65_536; bits++) {
		bytes[2 * bits] = bits & 0xff;
		bytes[(2 * bits) + 1] = bits >> 8;
	}

	const decoded = decodeToFloat32(bytes, 'F16');
	assert.equal(decoded.length, 65_536);
	for (let bits = 0; bits < 65_536; bits++) {
		// Every half is exact in float32, so the comparison is exact.
		sameValue(decoded[bits]!, half(bits), `0x${bits.toString(16)}`);
	}

	// Unaligned input (odd byteOffset) takes the byte path and agrees.
	const unaligned = new Uint8Array(bytes.length + 1);
	unaligned.set(bytes, 1);
	const fromUnaligned = decodeToFloat32(unaligned.subarray(1), 'F16');
	for (let bits = 0; bits < 65_536; bits += 97) {
		sameValue(fromUnaligned[bits]!, half(bits), `unaligned 0x${bits.toString(16)}`);
	}
});

test('F16 encoding round-trips every non-NaN pattern and keeps NaN a NaN', () => {
	for (let bits = 0; bits < 65_536; bits++) {
		const value = half(bits);
		const encoded = floatToHalfBits(value);
		if (Number.isNaN(value)) {
			assert.equal(encoded & 0x7c_00, 0x7c_00, `NaN 0x${bits.toString(16)} exponent`);
			assert.notEqual(encoded & 0x3_ff, 0, `NaN 0x${bits.toString(16)} stays NaN`);
		} else {
			assert.equal(encoded, bits, `0x${bits.toString(16)} (${value})`);
		}
	}
});

test('F16 encoding rounds to nearest, ties to even, across subnormals, normals and overflow', () => {
	// Between each pair of adjacent non-negative halves: the midpoint goes to the even code,
	// anything just off the midpoint to the nearer one. Midpoints need 12 significant bits, so
	// they are exact in float32.
	// The same cases through encodeFromFloat32, whose array path has its own inline normal range.
	const inputs: number[] = [];
	const expected: number[] = [];
	const check = (value: number, bits: number, what: string): void => {
		assert.equal(floatToHalfBits(value), bits, what);
		inputs.push(value);
		expected.push(bits);
	};

	for (let bits = 0; bits < 0x7c_00; bits++) {
		const low = half(bits);
		const high = half(bits + 1 === 0x7c_00 ? 0x7c_00 : bits + 1);
		const upper = bits + 1 === 0x7c_00 ? 65_536 : high; // Overflow threshold: the next exponent's value
		const mid = (low + upper) / 2;
		const even = bits % 2 === 0 ? bits : bits + 1;
		check(mid, even, `midpoint after 0x${bits.toString(16)}`);
		check(-mid, 0x80_00 | even, `negative midpoint after 0x${bits.toString(16)}`);
		const below = Math.fround(mid - ((upper - low) / 8));
		const above = Math.fround(mid + ((upper - low) / 8));
		check(below, bits, `just below midpoint after 0x${bits.toString(16)}`);
		check(above, bits + 1, `just above midpoint after 0x${bits.toString(16)}`);
		check(low, bits, `exact 0x${bits.toString(16)}`);
	}

	// Below the smallest subnormal: a tie at 2^-25 goes to (even) zero, anything above it to 1.
	check(2 ** -25, 0, '2^-25');
	check(Math.fround(2 ** -25 * 1.0001), 1, 'just above 2^-25');
	check(-(2 ** -25), 0x80_00, '-2^-25');
	check(2 ** -26, 0, '2^-26');
	check(-1e-30, 0x80_00, '-1e-30');
	check(-0, 0x80_00, '-0');

	const encoded = new Uint16Array(encodeFromFloat32(Float32Array.from(inputs), 'F16').buffer);
	for (const [i, bits] of expected.entries()) {
		if (encoded[i] !== bits) {
			assert.fail(`encodeFromFloat32 ${inputs[i]}: 0x${encoded[i]!.toString(16)}, expected 0x${bits.toString(16)}`);
		}
	}

	assert.equal(floatToHalfBits(65_504), 0x7b_ff);
	assert.equal(floatToHalfBits(65_519), 0x7b_ff);
	assert.equal(floatToHalfBits(65_520), 0x7c_00, '65520 ties to even = Inf');
	assert.equal(floatToHalfBits(1e10), 0x7c_00);
	assert.equal(floatToHalfBits(Number.NEGATIVE_INFINITY), 0xfc_00);
	assert.equal(floatToHalfBits(2 ** -25), 0, '2^-25 ties to even = 0');
	assert.equal(floatToHalfBits(Math.fround(2 ** -25 * 1.0001)), 1);
	assert.equal(floatToHalfBits(2 ** -26), 0);
	assert.equal(floatToHalfBits(-0), 0x80_00);
	assert.equal(floatToHalfBits(1.401_298_464_324_817e-45), 0, 'float32 subnormal underflows to 0');
	assert.equal(floatToHalfBits(-1.401_298_464_324_817e-45), 0x80_00, 'and keeps its sign');
});

test('BF16 decodes every pattern as the top half of a float32', () => {
	const bytes = new Uint8Array(65_536 * 2);
	for (let bits = 0; bits < 65_536; bits++) {
		bytes[2 * bits] = bits & 0xff;
		bytes[(2 * bits) + 1] = bits >> 8;
	}

	const decoded = decodeToFloat32(bytes, 'BF16');
	const view = new DataView(new ArrayBuffer(4));
	for (let bits = 0; bits < 65_536; bits++) {
		view.setUint32(0, bits * 65_536);
		sameValue(decoded[bits]!, view.getFloat32(0), `0x${bits.toString(16)}`);
	}
});

test('BF16 encoding rounds to nearest even (reference: pick the nearer candidate in float64)', () => {
	const view = new DataView(new ArrayBuffer(4));
	const valueOf = (bf16: number): number => {
		if ((bf16 & 0x7f_ff) === 0x7f_80) {
			// The overflow threshold treats Inf as the next power of two after the max.
			return (bf16 & 0x80_00) === 0 ? 2 ** 128 : -(2 ** 128);
		}

		view.setUint32(0, bf16 * 65_536);
		return view.getFloat32(0);
	};

	let state = 12_345;
	const samples: number[] = [0x7f_7f_ff_ff, 0xff_7f_ff_ff, 0x7f_7f_80_00, 0x7f_7f_7f_ff, 0x00_00_80_00, 0x00_01_80_00, 0x3f_80_80_00, 0x3f_81_80_00, 1, 0x80_00_00_01];
	for (let i = 0; i < 200_000; i++) {
		state = (Math.imul(state, 1_103_515_245) + 12_345) >>> 0;
		samples.push(state);
	}

	for (const bits of samples) {
		view.setUint32(0, bits);
		const value = view.getFloat32(0);
		if (Number.isNaN(value)) {
			const encoded = floatToBf16Bits(value);
			assert.equal(encoded & 0x7f_80, 0x7f_80);
			assert.notEqual(encoded & 0x7f, 0, 'NaN stays NaN');
			continue;
		}

		const truncated = bits >>> 16;
		const candidates = [truncated, truncated + 1];
		const distances = candidates.map(c => Math.abs(valueOf(c) - value));
		let expected: number;
		if (distances[0]! < distances[1]!) {
			expected = truncated;
		} else if (distances[1]! < distances[0]!) {
			expected = truncated + 1;
		} else {
			expected = truncated % 2 === 0 ? truncated : truncated + 1;
		}

		assert.equal(floatToBf16Bits(value), expected & 0xff_ff, `bits 0x${bits.toString(16)}`);
	}

	assert.equal(floatToBf16Bits(Number.POSITIVE_INFINITY), 0x7f_80);
	assert.equal(floatToBf16Bits(Number.NEGATIVE_INFINITY), 0xff_80);
});

test('F8 E4M3FN and E5M2 decode all 256 codes like the reference', () => {
	const codes = Uint8Array.from({length: 256}, (_, i) => i);
	const d4 = decodeToFloat32(codes, 'F8_E4M3');
	const d5 = decodeToFloat32(codes, 'F8_E5M2');
	for (let code = 0; code < 256; code++) {
		sameValue(d4[code]!, e4m3(code), `E4M3 0x${code.toString(16)}`);
		sameValue(d5[code]!, e5m2(code), `E5M2 0x${code.toString(16)}`);
	}

	assert.equal(e4m3(0x7e), 448, 'E4M3FN max is 448');
	assert.equal(d4[0x7e], 448);
	assert.equal(d5[0x7b], 57_344, 'E5M2 max is 57344');
	assert.equal(d5[0x7c], Number.POSITIVE_INFINITY);
});

test('F8 encoders round-trip, round half to even, and handle overflow like PyTorch', () => {
	for (const [name, encode, reference, nanCheck] of [
		['E4M3', floatToE4m3Bits, e4m3, (b: number) => (b & 0x7f) === 0x7f],
		['E5M2', floatToE5m2Bits, e5m2, (b: number) => (b & 0x7c) === 0x7c && (b & 0x03) !== 0],
	] as const) {
		for (let code = 0; code < 256; code++) {
			const value = reference(code);
			if (Number.isNaN(value)) {
				assert.ok(nanCheck(encode(value)), `${name} NaN`);
				continue;
			}

			assert.equal(encode(value), code, `${name} 0x${code.toString(16)} (${value})`);
		}

		// Midpoints between adjacent positive finite codes.
		for (let code = 0; code < 0x7f; code++) {
			const low = reference(code);
			const high = reference(code + 1);
			if (!Number.isFinite(low) || !Number.isFinite(high)) {
				continue;
			}

			const mid = (low + high) / 2;
			const even = code % 2 === 0 ? code : code + 1;
			assert.equal(encode(mid), even, `${name} midpoint after 0x${code.toString(16)}`);
			assert.equal(encode(mid - ((high - low) / 8)), code, `${name} below midpoint after 0x${code.toString(16)}`);
			assert.equal(encode(mid + ((high - low) / 8)), code + 1, `${name} above midpoint after 0x${code.toString(16)}`);
		}
	}

	assert.equal(floatToE4m3Bits(464), 0x7e, '464 ties to even = 448');
	assert.equal(floatToE4m3Bits(470), 0x7f, 'rounds past 448: NaN (no infinities in E4M3FN)');
	assert.equal(floatToE4m3Bits(1e6), 0x7f);
	assert.equal(floatToE4m3Bits(Number.NEGATIVE_INFINITY), 0xff);
	assert.equal(floatToE4m3Bits(2 ** -10), 0, 'half of the smallest subnormal ties to 0');
	assert.equal(floatToE4m3Bits(2 ** -9), 1, 'smallest subnormal');
	assert.equal(floatToE5m2Bits(61_439), 0x7b);
	assert.equal(floatToE5m2Bits(61_440), 0x7c, 'midpoint past the max ties to even = Inf');
	assert.equal(floatToE5m2Bits(-1e9), 0xfc);
	assert.equal(floatToE5m2Bits(-0), 0x80);
});

test('encodeFromFloat32 and decodeToFloat32 round-trip every float dtype', () => {
	const values = new Float32Array([0, -0, 1, -2.5, 0.1, 3.14159, 1e-3, -448, 240]);
	for (const dtype of ['F32', 'F64'] as const) {
		const bytes = encodeFromFloat32(values, dtype);
		assert.equal(bytes.byteLength, values.length * dtypeSize[dtype]);
		assert.deepEqual(decodeToFloat32(bytes, dtype), values);
	}

	for (const [dtype, encodeOne] of [['F16', floatToHalfBits], ['BF16', floatToBf16Bits]] as const) {
		const bytes = encodeFromFloat32(values, dtype);
		const decoded = decodeToFloat32(bytes, dtype);
		for (const [i, value] of values.entries()) {
			const bits = bytes[2 * i]! | (bytes[(2 * i) + 1]! << 8);
			assert.equal(bits, encodeOne(value), `${dtype} little-endian bits of ${value}`);
			assert.ok(Math.abs(decoded[i]! - value) <= Math.abs(value) * (dtype === 'F16' ? 2 ** -11 : 2 ** -8), `${dtype} ${value} → ${decoded[i]}`);
		}
	}

	for (const dtype of ['F8_E4M3', 'F8_E5M2'] as const) {
		const bytes = encodeFromFloat32(values, dtype);
		assert.equal(bytes.byteLength, values.length);
		const again = encodeFromFloat32(decodeToFloat32(bytes, dtype), dtype);
		assert.deepEqual(again, bytes, `${dtype} is stable after one rounding`);
	}

	assert.throws(() => encodeFromFloat32(values, 'I32'), /cannot encode/);
});

test('integer and BOOL dtypes decode by value; misaligned lengths are refused', () => {
	const view = new DataView(new ArrayBuffer(8 * 3));
	view.setBigInt64(0, -5n, true);
	view.setBigInt64(8, 2n ** 40n, true);
	view.setBigInt64(16, 7n, true);
	assert.deepEqual([...decodeToFloat32(new Uint8Array(view.buffer), 'I64')], [-5, 2 ** 40, 7]);
	assert.deepEqual([...decodeToFloat32(Uint8Array.from([0xff, 0x7f, 0x00, 0x80]), 'I16')], [32_767, -32_768]);
	assert.deepEqual([...decodeToFloat32(Uint8Array.from([0xff, 0xff, 0xff, 0xff]), 'I32')], [-1]);
	assert.deepEqual([...decodeToFloat32(Uint8Array.from([0xff, 0x01]), 'I8')], [-1, 1]);
	assert.deepEqual([...decodeToFloat32(Uint8Array.from([0xff, 0x01]), 'U8')], [255, 1]);
	assert.deepEqual([...decodeToFloat32(Uint8Array.from([0, 1]), 'BOOL')], [0, 1]);
	assert.throws(() => decodeToFloat32(new Uint8Array(3), 'F16'), /3 bytes is not a whole number of F16 values/);
	assert.throws(() => decodeToFloat32(new Uint8Array(6), 'F32'), RangeError);
});
