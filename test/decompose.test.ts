// The decomposition against a dense float64 reference: ΔW = scale·up·down is built explicitly
// and its SVD computed by a one-sided (Hestenes) Jacobi written here, independent of the code
// under test (which never forms ΔW and works from Grams and a pivoted Cholesky).
import assert from 'node:assert/strict';
import {existsSync, readdirSync} from 'node:fs';
import path from 'node:path';
import {after, before, test} from 'node:test';
import {fileURLToPath} from 'node:url';
import {decomposeHeader} from '../source/engine/jobs/decompose.js';
import {decomposeModule, factorizeModule, moduleCore, moduleVectors, spectrumFromGrams} from '../source/engine/kernels/decompose.js';
import {jsKernels} from '../source/engine/kernels/js-kernels.js';
import {createOrtKernels} from '../source/engine/kernels/ort-kernels.js';
import type {EngineKernels} from '../source/engine/kernels/types.js';
import {decodeToFloat32, encodeFromFloat32} from '../source/lora/dtypes.js';
import {loadLoraModel} from '../source/lora/model.js';
import {readHeader, TensorReader} from '../source/lora/safetensors.js';
import {orthonormal} from './helpers/random.js';

function lcg(seed: number): () => number {
	let state = seed >>> 0;
	return () => {
		state = (Math.imul(state, 1_664_525) + 1_013_904_223) >>> 0;
		return (state / 2 ** 32) - 0.5;
	};
}

/**
 * Factors whose product has singular values `sigma` (before float32 rounding), hidden behind a
 * random mixing matrix with condition number about `mixCondition` so neither factor is orthogonal.
 */
function designedFactors(out: number, rank: number, inDim: number, sigma: number[], mixCondition: number, seed: number): {up: Float32Array; down: Float32Array} {
	const next = lcg(seed);
	// The helper centres random() itself; these generators are centred already.
	const uniform = (): number => next() + 0.5;
	const u = orthonormal(uniform, out, rank);
	const v = orthonormal(uniform, inDim, rank);
	// Mixing M = Q·diag(d)·Qᵀ, d log-spaced in [1, mixCondition]; its inverse is Q·diag(1/d)·Qᵀ.
	const q = orthonormal(uniform, rank, rank);
	const d = Array.from({length: rank}, (_, i) => mixCondition ** (i / Math.max(rank - 1, 1)));
	const mix = (inverse: boolean) => {
		const m = new Float64Array(rank * rank);
		for (let a = 0; a < rank; a++) {
			for (let b = 0; b < rank; b++) {
				let sum = 0;
				for (let t = 0; t < rank; t++) {
					sum += q[t]![a]! * (inverse ? 1 / d[t]! : d[t]!) * q[t]![b]!;
				}

				m[(a * rank) + b] = sum;
			}
		}

		return m;
	};

	const m = mix(false);
	const mInverse = mix(true);
	// up = U·diag(σ)·M (out×rank), down = M⁻¹·Vᵀ (rank×inDim).
	const up = new Float32Array(out * rank);
	for (let i = 0; i < out; i++) {
		for (let b = 0; b < rank; b++) {
			let sum = 0;
			for (let t = 0; t < rank; t++) {
				sum += u[t]![i]! * (sigma[t] ?? 0) * m[(t * rank) + b]!;
			}

			up[(i * rank) + b] = sum;
		}
	}

	const down = new Float32Array(rank * inDim);
	for (let a = 0; a < rank; a++) {
		for (let j = 0; j < inDim; j++) {
			let sum = 0;
			for (let t = 0; t < rank; t++) {
				sum += mInverse[(a * rank) + t]! * v[t]![j]!;
			}

			down[(a * inDim) + j] = sum;
		}
	}

	return {up, down};
}

function denseDeltaW(up: ArrayLike<number>, down: ArrayLike<number>, out: number, rank: number, inDim: number, scale: number): Float64Array {
	const w = new Float64Array(out * inDim);
	for (let i = 0; i < out; i++) {
		for (let t = 0; t < rank; t++) {
			const value = scale * up[(i * rank) + t]!;
			for (let j = 0; j < inDim; j++) {
				w[(i * inDim) + j]! += value * down[(t * inDim) + j]!;
			}
		}
	}

	return w;
}

/** One-sided Jacobi SVD of a dense rows×cols matrix: singular values descending with U and V columns. */
function referenceSvd(a: Float64Array, rows: number, cols: number): {sigma: number[]; u: Float64Array[]; v: Float64Array[]} {
	if (cols > rows) {
		// Rotate the fewer columns: SVD of Aᵀ, with U and V swapped.
		const t = referenceSvd(transposeOf(a, rows, cols), cols, rows);
		return {sigma: t.sigma, u: t.v, v: t.u};
	}

	// Work on columns: col[j] is column j of A; V accumulates the rotations.
	const col = Array.from({length: cols}, (_, j) => Float64Array.from({length: rows}, (_, i) => a[(i * cols) + j]!));
	const v = Array.from({length: cols}, (_, j) => Float64Array.from({length: cols}, (_, i) => (i === j ? 1 : 0)));
	for (let sweep = 0; sweep < 80; sweep++) {
		let rotated = false;
		for (let p = 0; p < cols - 1; p++) {
			for (let q = p + 1; q < cols; q++) {
				let alpha = 0;
				let beta = 0;
				let gamma = 0;
				for (let i = 0; i < rows; i++) {
					alpha += col[p]![i]! ** 2;
					beta += col[q]![i]! ** 2;
					gamma += col[p]![i]! * col[q]![i]!;
				}

				if (Math.abs(gamma) <= 1e-15 * Math.sqrt(alpha * beta) || gamma === 0) {
					continue;
				}

				rotated = true;
				const zeta = (beta - alpha) / (2 * gamma);
				const t = Math.sign(zeta || 1) / (Math.abs(zeta) + Math.sqrt(1 + (zeta * zeta)));
				const c = 1 / Math.sqrt(1 + (t * t));
				const s = c * t;
				for (const matrix of [col, v]) {
					const x = matrix[p]!;
					const y = matrix[q]!;
					for (let i = 0; i < x.length; i++) {
						const xi = x[i]!;
						x[i] = (c * xi) - (s * y[i]!);
						y[i] = (s * xi) + (c * y[i]!);
					}
				}
			}
		}

		if (!rotated) {
			break;
		}
	}

	const order = col.map((c, j) => ({j, sigma: Math.hypot(...c)})).sort((x, y) => y.sigma - x.sigma);
	return {
		sigma: order.map(o => o.sigma),
		u: order.map(o => col[o.j]!.map(x => x / (o.sigma || 1))),
		v: order.map(o => v[o.j]!),
	};
}

type Case = {name: string; out: number; rank: number; inDim: number; scale: number; sigma: number[]; mix: number};

const logSpaced = (count: number, top: number, bottom: number) => Array.from({length: count}, (_, i) => top * ((bottom / top) ** (i / Math.max(count - 1, 1))));

const cases: Case[] = [
	{name: 'linear 120×80 r8, spectrum 1…1e-4', out: 120, rank: 8, inDim: 80, scale: 0.5, sigma: logSpaced(8, 1, 1e-4), mix: 10},
	{name: 'linear 64×300 r16, ill-conditioned factors (κ 1e4)', out: 64, rank: 16, inDim: 300, scale: 2, sigma: logSpaced(16, 3, 3e-4), mix: 1e4},
	// 3×3 conv: down (r, c, 3, 3) flattened to r×(c·9), up (o, r, 1, 1) to o×r, as kohya does.
	{name: 'conv 3×3 32←16·9 r12', out: 32, rank: 12, inDim: 16 * 9, scale: 1 / 12, sigma: logSpaced(12, 5, 1e-3), mix: 100},
	// Factors that cancel in their product (up = U·Σ·M, down = M⁻¹·Vᵀ with κ(M) = 1e6): the
	// float64 Grams alone lose the small values here; the refined route must take over.
	{name: 'cancelling factors (κ 1e6)', out: 64, rank: 16, inDim: 300, scale: 2, sigma: logSpaced(16, 3, 3e-4), mix: 1e6},
	{name: 'negative scale', out: 40, rank: 6, inDim: 50, scale: -0.75, sigma: logSpaced(6, 1, 0.01), mix: 3},
];

let ort: EngineKernels;
before(async () => {
	ort = await createOrtKernels('cpu', {threads: 1});
});
after(async () => {
	await ort.dispose();
});

for (const c of cases) {
	test(`singular values and vectors vs a dense float64 SVD: ${c.name}`, async () => {
		const {up, down} = designedFactors(c.out, c.rank, c.inDim, c.sigma, c.mix, c.out + c.rank);
		const w = denseDeltaW(up, down, c.out, c.rank, c.inDim, c.scale);
		const reference = referenceSvd(w, c.out, c.inDim);
		const sigmaMax = reference.sigma[0]!;
		const significant = reference.sigma.filter(s => s >= 1e-3 * sigmaMax);
		assert.ok(significant.length >= 3, 'the case must exercise several singular values');
		for (const kernels of [ort, jsKernels]) {
			const label = `${kernels.backend} ${c.name}`;
			const core = await moduleCore(up, down, c.out, c.rank, c.inDim, kernels);
			if (c.mix >= 1e6 || c.mix <= 100) {
				assert.equal(core?.refined, c.mix >= 1e6, `${label}: route`);
			}

			const result = await decomposeModule(up, down, c.out, c.rank, c.inDim, c.scale, kernels);
			assert.ok(result.singularValues.length <= c.rank);
			assert.ok(result.singularValues.length >= significant.length, `${label}: ${result.singularValues.length} values`);
			for (const [i, expected] of significant.entries()) {
				const actual = result.singularValues[i]!;
				assert.ok(Math.abs(actual - expected) <= 1e-4 * expected, `${label} σ${i}: ${actual} vs ${expected}`);
				if (i > 0) {
					assert.ok(actual <= result.singularValues[i - 1]!);
				}
			}

			const k = result.singularValues.length;
			// Singular vectors of well-separated values match the reference up to sign.
			for (const [i] of significant.entries()) {
				let du = 0;
				let dv = 0;
				for (let row = 0; row < c.out; row++) {
					du += result.u[(row * k) + i]! * reference.u[i]![row]!;
				}

				for (let col = 0; col < c.inDim; col++) {
					dv += result.vt[(i * c.inDim) + col]! * reference.v[i]![col]!;
				}

				assert.ok(Math.abs(Math.abs(du) - 1) < 1e-4, `${label} |u${i}·uref| = ${Math.abs(du)}`);
				assert.ok(Math.abs(Math.abs(dv) - 1) < 1e-4, `${label} |v${i}·vref| = ${Math.abs(dv)}`);
				// Same sign pairing as ΔW: u·σ·vᵀ must reproduce the reference triplet, not its negative.
				assert.ok(du * dv > 0, `${label} triplet ${i} has the wrong sign`);
			}

			// U·diag(S)·Vt reproduces scale·up·down.
			let error = 0;
			let norm = 0;
			for (let row = 0; row < c.out; row++) {
				for (let col = 0; col < c.inDim; col++) {
					let sum = 0;
					for (let t = 0; t < k; t++) {
						sum += result.u[(row * k) + t]! * result.singularValues[t]! * result.vt[(t * c.inDim) + col]!;
					}

					error += (sum - w[(row * c.inDim) + col]!) ** 2;
					norm += w[(row * c.inDim) + col]! ** 2;
				}
			}

			assert.ok(Math.sqrt(error / norm) < 1e-5, `${label}: reconstruction error ${Math.sqrt(error / norm)}`);
		}
	});
}

test('the fast route alone misses the 1e-4 target on cancelling factors (why the refined route exists)', async () => {
	const c = cases.find(entry => entry.mix === 1e6)!;
	const {up, down} = designedFactors(c.out, c.rank, c.inDim, c.sigma, c.mix, c.out + c.rank);
	const reference = referenceSvd(denseDeltaW(up, down, c.out, c.rank, c.inDim, c.scale), c.out, c.inDim).sigma;
	const {gu, gd} = await jsKernels.gramPair(up, c.out, c.rank, down, c.inDim);
	const fast = spectrumFromGrams(gu, gd, c.rank, c.scale);
	const worst = Math.max(...reference.filter(s => s >= 1e-3 * reference[0]!).map((s, i) => Math.abs((fast[i] ?? 0) - s) / s));
	assert.ok(worst > 1e-4, `fast route error ${worst}`);
});

test('rank-deficient factors: duplicated up columns and an all-zero up', async () => {
	const out = 30;
	const rank = 5;
	const inDim = 20;
	const next = lcg(3);
	const up = Float32Array.from({length: out * rank}, next);
	const down = Float32Array.from({length: rank * inDim}, next);
	// Column 4 of up equals column 3: up·down has rank 4.
	for (let i = 0; i < out; i++) {
		up[(i * rank) + 4] = up[(i * rank) + 3]!;
	}

	const reference = referenceSvd(denseDeltaW(up, down, out, rank, inDim, 1), out, inDim);
	for (const kernels of [ort, jsKernels]) {
		const result = await decomposeModule(up, down, out, rank, inDim, 1, kernels);
		assert.equal(result.singularValues.length, 4, `${kernels.backend}: ${Array.from(result.singularValues).join(', ')}`);
		for (let i = 0; i < 4; i++) {
			assert.ok(Math.abs(result.singularValues[i]! - reference.sigma[i]!) <= 1e-6 * reference.sigma[i]!);
		}

		const zero = await decomposeModule(new Float32Array(out * rank), down, out, rank, inDim, 1, kernels);
		assert.equal(zero.singularValues.length, 0);
		assert.equal(zero.u.length, 0);
	}

	// Duplicated down rows: the pivoted Cholesky must drop the dependent pivot.
	const upFull = Float32Array.from({length: out * rank}, next);
	const downDup = Float32Array.from(down);
	downDup.copyWithin(4 * inDim, 3 * inDim, 4 * inDim);
	const referenceDup = referenceSvd(denseDeltaW(upFull, downDup, out, rank, inDim, 1), out, inDim);
	for (const kernels of [ort, jsKernels]) {
		const result = await decomposeModule(upFull, downDup, out, rank, inDim, 1, kernels);
		assert.equal(result.singularValues.length, 4, `${kernels.backend}: ${Array.from(result.singularValues).join(', ')}`);
		for (let i = 0; i < 4; i++) {
			assert.ok(Math.abs(result.singularValues[i]! - referenceDup.sigma[i]!) <= 1e-6 * referenceDup.sigma[i]!);
		}
	}
});

test('float16 input decomposes the values the file holds', async () => {
	const {up, down} = designedFactors(96, 8, 64, logSpaced(8, 2, 2e-3), 10, 11);
	const upBytes = encodeFromFloat32(up, 'F16');
	const downBytes = encodeFromFloat32(down, 'F16');
	const upHalf = decodeToFloat32(upBytes, 'F16');
	const downHalf = decodeToFloat32(downBytes, 'F16');
	const reference = referenceSvd(denseDeltaW(upHalf, downHalf, 96, 8, 64, 1), 96, 64);
	const factorization = await factorizeModule({dtype: 'F16', bytes: upBytes}, {dtype: 'F16', bytes: downBytes}, 96, 8, 64, 1, ort);
	for (const [i, expected] of reference.sigma.slice(0, 8).entries()) {
		if (expected >= 1e-3 * reference.sigma[0]!) {
			assert.ok(Math.abs(factorization.singularValues[i]! - expected) <= 1e-4 * expected, `σ${i}`);
		}
	}
});

test('moduleVectors keeps the leading triplets only', async () => {
	const {up, down} = designedFactors(50, 6, 40, logSpaced(6, 1, 0.05), 5, 21);
	const factorization = await factorizeModule(up, down, 50, 6, 40, 1, jsKernels);
	const full = await moduleVectors(factorization, up, down, jsKernels);
	const two = await moduleVectors(factorization, up, down, jsKernels, 2);
	assert.equal(two.u.length, 50 * 2);
	assert.equal(two.vt.length, 2 * 40);
	for (let row = 0; row < 50; row++) {
		for (let t = 0; t < 2; t++) {
			assert.equal(two.u[(row * 2) + t], full.u[(row * 6) + t]);
		}
	}

	assert.deepEqual(Array.from(two.vt), Array.from(full.vt.subarray(0, 80)));
});

/** R of a thin QR of a rows×cols matrix (row-major), by classical Gram–Schmidt applied twice. */
function qrR(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
	const q = Array.from({length: cols}, (_, j) => Float64Array.from({length: rows}, (_, i) => a[(i * cols) + j]!));
	const r = new Float64Array(cols * cols);
	for (let j = 0; j < cols; j++) {
		for (let pass = 0; pass < 2; pass++) {
			for (let i = 0; i < j; i++) {
				let dot = 0;
				for (let t = 0; t < rows; t++) {
					dot += q[i]![t]! * q[j]![t]!;
				}

				r[(i * cols) + j]! += dot;
				for (let t = 0; t < rows; t++) {
					q[j]![t]! -= dot * q[i]![t]!;
				}
			}
		}

		const norm = Math.hypot(...q[j]!);
		r[(j * cols) + j] = norm;
		for (let t = 0; t < rows; t++) {
			q[j]![t] = norm > 0 ? q[j]![t]! / norm : 0;
		}
	}

	return r;
}

const realDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '../shared/real-loras');
const realMissing = !existsSync(realDir);

test('real LoRA files: every spectrum matches a QR + one-sided Jacobi reference', {skip: realMissing ? 'needs ../shared/real-loras' : false}, async () => {
	let checked = 0;
	for (const file of readdirSync(realDir).filter(name => name.endsWith('.safetensors'))) {
		const header = await readHeader(path.join(realDir, file));
		const {summary} = await decomposeHeader(header, {kernels: ort, device: 'cpu'});
		const reader = await TensorReader.open(header);
		try {
			const model = await loadLoraModel(header, async name => reader.read(name));
			const byName = new Map(model.modules.map(m => [m.name, m]));
			for (const spectrum of summary.modules.filter(m => m.resizable)) {
				const module = byName.get(spectrum.name)!;
				const rank = module.rank!;
				const up = await reader.read(module.tensors.up!);
				const down = await reader.read(module.tensors.down!);
				// ΔW = up·down = Qu·(Ru·Rdᵀ)·Qdᵀ: the singular values of the r×r core are those of ΔW.
				const ru = qrR(up, module.outDim, rank);
				const rd = qrR(transposeOf(down, rank, module.inDim), module.inDim, rank);
				const core = new Float64Array(rank * rank);
				for (let i = 0; i < rank; i++) {
					for (let j = 0; j < rank; j++) {
						let sum = 0;
						for (let t = 0; t < rank; t++) {
							sum += ru[(i * rank) + t]! * rd[(j * rank) + t]!;
						}

						core[(i * rank) + j] = module.scale * sum;
					}
				}

				const reference = referenceSvd(core, rank, rank).sigma.map(Math.abs);
				const top = reference[0]!;
				for (const [i, expected] of reference.entries()) {
					if (expected >= 1e-3 * top) {
						const actual = spectrum.singularValues[i]!;
						assert.ok(Math.abs(actual - expected) <= 1e-4 * expected, `${file} ${spectrum.name} σ${i}: ${actual} vs ${expected}`);
					}
				}

				checked++;
			}
		} finally {
			await reader.close();
		}
	}

	assert.ok(checked > 100, `${checked} modules checked`);
});

function transposeOf(a: ArrayLike<number>, rows: number, cols: number): Float64Array {
	const out = new Float64Array(rows * cols);
	for (let i = 0; i < rows; i++) {
		for (let j = 0; j < cols; j++) {
			out[(j * rows) + i] = a[(i * cols) + j]!;
		}
	}

	return out;
}

test('a decomposed file hands the writer exact factors: U·S·Vt = scale·up·down per module', async () => {
	const {generateSample} = await import('../source/lora/samples.js');
	const {writeSafetensorsAtomic} = await import('../source/lora/writer.js');
	const {mkdtemp, rm} = await import('node:fs/promises');
	const os = await import('node:os');
	const dir = await mkdtemp(path.join(os.tmpdir(), 'lorascope-decompose-'));
	try {
		const file = path.join(dir, 'locon.safetensors');
		const sample = await generateSample('sd15-locon', {rank: 4, alpha: 2, convRank: 4, convAlpha: 1, dtype: 'F16', hashes: false, textEncoder: false});
		await writeSafetensorsAtomic(file, sample.tensors, sample.metadata, {overwrite: true});
		const header = await readHeader(file);
		const decomposition = await decomposeHeader(header, {kernels: ort, device: 'cpu'});
		const reader = await TensorReader.open(header);
		try {
			const model = await loadLoraModel(header, async name => reader.read(name));
			const kinds = new Set<string>();
			// The two smallest linear and 3×3 conv modules keep the dense reference cheap.
			const smallest = (kind: string) => model.modules.filter(m => m.rank !== null && m.kind === kind).sort((a, b) => (a.outDim * a.inDim) - (b.outDim * b.inDim)).slice(0, 2);
			for (const module of [...smallest('linear'), ...smallest('convkxk')]) {
				const factorization = decomposition.factors.get(module.name);
				assert.ok(factorization, module.name);
				const up = await reader.read(module.tensors.up!);
				const down = await reader.read(module.tensors.down!);
				const k = factorization.singularValues.length;
				const {u, vt} = await moduleVectors(factorization, up, down, ort);
				const w = denseDeltaW(up, down, module.outDim, module.rank!, module.inDim, module.scale);
				let error = 0;
				let norm = 0;
				for (let i = 0; i < module.outDim; i++) {
					for (let j = 0; j < module.inDim; j++) {
						let sum = 0;
						for (let t = 0; t < k; t++) {
							sum += u[(i * k) + t]! * factorization.singularValues[t]! * vt[(t * module.inDim) + j]!;
						}

						error += (sum - w[(i * module.inDim) + j]!) ** 2;
						norm += w[(i * module.inDim) + j]! ** 2;
					}
				}

				assert.ok(Math.sqrt(error / Math.max(norm, 1e-300)) < 1e-5, `${module.name} (${module.kind}): ${Math.sqrt(error / norm)}`);
				kinds.add(module.kind);
			}

			assert.ok(kinds.has('convkxk') && kinds.has('linear'), [...kinds].join(','));
		} finally {
			await reader.close();
		}
	} finally {
		await rm(dir, {recursive: true, force: true});
	}
});
