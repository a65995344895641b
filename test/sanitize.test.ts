import assert from 'node:assert/strict';
import {test} from 'node:test';
import {displayWidth, prettyJson, sanitizeLine, sanitizeText} from '../source/lora/sanitize.js';

/** Asserts the output can do nothing to a terminal: no ESC, BEL, C1 controls or bidi controls. */
function assertInert(out: string, singleLine = true): void {
	for (const ch of out) {
		const cp = ch.codePointAt(0)!;
		assert.notEqual(cp, 0x1b, 'ESC in output');
		assert.notEqual(cp, 0x07, 'BEL in output');
		assert.ok(!(cp >= 0x80 && cp <= 0x9f), `C1 control U+${cp.toString(16)} in output`);
		assert.ok(!(cp >= 0x202a && cp <= 0x202e), `bidi override U+${cp.toString(16)} in output`);
		assert.ok(!(cp >= 0x2066 && cp <= 0x2069), `bidi isolate U+${cp.toString(16)} in output`);
		assert.ok(!(cp >= 0xd800 && cp <= 0xdfff), 'lone surrogate in output');
		if (singleLine) {
			assert.ok(cp >= 0x20 && cp !== 0x7f, `control U+${cp.toString(16)} in single-line output`);
		} else {
			assert.ok(cp >= 0x20 || cp === 0x0a || cp === 0x09, `control U+${cp.toString(16)} in output`);
		}
	}
}

const hostile: Array<[string, string, string]> = [
	['CSI cursor moves and colours', 'a\x1b[2J\x1b[H\x1b[10;20Hb\x1b[31mred\x1b[0m\x1b[?1049l', 'abred'],
	['OSC 0 title with BEL', '\x1b]0;pwned title\x07visible', 'visible'],
	['OSC 2 title with ST', 'x\x1b]2;title\x1b\\y', 'xy'],
	['OSC 52 clipboard write (BEL)', '\x1b]52;c;cm0gLXJmIH4K\x07text', 'text'],
	['OSC 52 clipboard write (ST)', 'pre\x1b]52;c;cm0gLXJmIH4K\x1b\\post', 'prepost'],
	['OSC 8 hyperlink with ST', '\x1b]8;;https://evil.example/\x1b\\click me\x1b]8;;\x1b\\', 'click me'],
	['OSC 8 hyperlink with BEL', '\x1b]8;id=1;https://evil.example/\x07link\x1b]8;;\x07 after', 'link after'],
	['DCS string', '\x1bPq#0;2;0;0;0#0~~\x1b\\after', 'after'],
	['APC, PM, SOS strings', '\x1b_apc\x1b\\a\x1b^pm\x1b\\b\x1bXsos\x1b\\c', 'abc'],
	['two-character and nF escapes', '\x1bcreset\x1b7saved\x1b8\x1b(Bcharset\x1b#8', 'resetsavedcharset'],
	['bidi overrides and isolates', 'abc\u202Edef\u202C\u2066x\u2069\u2067y\u2068z\u202Aq\u202B', 'abcdefxyzq'],
	['zero-width and tag characters', 'a\u200Bb\u200Dc\uFEFFd\u{E0041}\u{E0042}e', 'abcde'],
	['NUL and BEL', 'a\0b\x07c', 'a\u2400b\u2407c'],
	['DEL', 'a\x7Fb', 'a\u2421b'],
	['8-bit C1 CSI', '\u009B2Jabc\u009D0;t\u009C', '\\x9B2Jabc\\x9D0;t\\x9C'],
	['lone ESC', 'abc\x1b', 'abc\u241B'],
	['unterminated OSC stays visible but inert', 'a\x1b]0;title', 'a\u241B]0;title'],
	['malformed CSI (control inside)', 'a\x1b[12\x07m', 'a\u241B[12\u2407m'],
	['lone surrogates', 'a\uD800b\uDC00c', 'a\uFFFDb\uFFFDc'],
];

for (const [name, input, expected] of hostile) {
	test(`sanitizeLine: ${name}`, () => {
		const out = sanitizeLine(input);
		assertInert(out);
		assert.equal(out, expected);
	});
}

test('every C0 and C1 control is made visible, never passed through', () => {
	let input = '';
	// ESC is left out: ESC followed by a letter is a complete two-character escape (tested above).
	for (let c = 0; c < 0x20; c++) {
		input += c === 0x1b ? 'q' : String.fromCharCode(c) + 'q';
	}

	for (let c = 0x7f; c <= 0x9f; c++) {
		input += String.fromCharCode(c) + 'w';
	}

	for (const singleLine of [true, false]) {
		for (const ascii of [false, true]) {
			const out = sanitizeText(input, {singleLine, ascii});
			assertInert(out, singleLine);
			assert.equal(out.split('q').length - 1, 32);
			assert.equal(out.split('w').length - 1, 33);
			assert.ok(out.length > input.length, 'controls became visible markers');
			if (ascii) {
				assert.match(out, /^[\x20-\x7e\n\t]*$/);
			}
		}
	}
});

test('multi-line mode keeps newlines and tabs, folds CRLF, shows lone CR', () => {
	assert.equal(sanitizeText('a\r\nb\tc\rd\u2028e'), 'a\nb\tc\u240Dd\ne');
	assert.equal(sanitizeText('a\r\nb\tc', {singleLine: true}), 'a\u240D\u240Ab c');
});

test('ascii mode replaces non-ASCII and uses caret notation', () => {
	assert.equal(sanitizeText('h\u00e9llo \u65e5\x1b\x00\x7f', {ascii: true, singleLine: true}), 'h?llo ?^[^@^?');
	// Combining marks vanish instead of adding a '?'.
	assert.equal(sanitizeText('e\u0301', {ascii: true}), 'e');
});

test('truncation respects display width and marks the cut', () => {
	assert.equal(sanitizeLine('abcdefghij', 10), 'abcdefghij');
	assert.equal(sanitizeLine('abcdefghijk', 10), 'abcdefghi\u2026');
	assert.equal(sanitizeText('abcdefghijk', {maxLength: 10, ascii: true}), 'abcdefg...');
	assert.equal(sanitizeLine('abc', 0), '');
	// Wide characters: 日本語テキスト is 14 columns; 5 columns hold two of them plus the ellipsis.
	const wide = sanitizeLine('日本語テキスト', 5);
	assert.equal(wide, '日本\u2026');
	assert.equal(displayWidth(wide), 5);
	// Sequences removed before the cut do not count.
	assert.equal(sanitizeLine('\x1b[31m' + 'x'.repeat(20), 5), 'xxxx\u2026');
	// Escapes that render wider (\x9B) count by what is shown.
	assert.equal(sanitizeLine('\u009b\u009b', 6), '\\x9B\\\u2026');
});

test('displayWidth: ASCII, wide, emoji, combining', () => {
	assert.equal(displayWidth('abc'), 3);
	assert.equal(displayWidth('日本'), 4);
	assert.equal(displayWidth('\u{1F600}'), 2);
	assert.equal(displayWidth('e\u0301'), 1);
	assert.equal(displayWidth('\uFF21'), 2); // fullwidth A
});

test('a 10 MB value is truncated quickly', () => {
	const big = 'A'.repeat(10 * 1024 * 1024);
	sanitizeLine(big, 10); // flattens the rope string outside the timing
	let start = performance.now();
	const out = sanitizeLine(big, 80);
	const plainMs = performance.now() - start;
	assert.equal(out.length, 80);
	assert.ok(out.endsWith('\u2026'));
	// It stops after 81 characters, so this is microseconds. The generous bounds here are no speed
	// test: they only catch a scan that goes quadratic (minutes), even on a loaded CI machine.
	assert.ok(plainMs < 500, `took ${plainMs.toFixed(1)} ms`);

	// Hostile bulk: every character needs work, and sequences carry no width, so the scan runs on.
	const nasty = '\x1b[31m\u009b\x00\u202e'.repeat(1024 * 1024);
	start = performance.now();
	const out2 = sanitizeLine(nasty, 80);
	const nastyMs = performance.now() - start;
	assertInert(out2);
	assert.ok(displayWidth(out2) <= 80);
	assert.ok(nastyMs < 5000, `took ${nastyMs.toFixed(1)} ms`);

	const onlySequences = '\x1b[0m'.repeat(2 * 1024 * 1024) + 'end';
	start = performance.now();
	assert.equal(sanitizeLine(onlySequences, 80), 'end');
	const seqMs = performance.now() - start;
	assert.ok(seqMs < 20_000, `took ${seqMs.toFixed(1)} ms`);

	start = performance.now();
	const full = sanitizeText(big);
	assert.equal(full.length, big.length);
	assert.ok(performance.now() - start < 2000);
});

test('random hostile strings always come out inert and within width', () => {
	// Deterministic xorshift so a failure reproduces.
	let state = 0x9e3779b9;
	const next = (): number => {
		state ^= state << 13;
		state ^= state >>> 17;
		state ^= state << 5;
		return (state >>> 0) / 2 ** 32;
	};

	const alphabet = ['\x1b', '[', ']', '\\', '\x07', '\x9b', '\x9c', '\x9d', '\u202e', '\u2066', 'a', '1', ';', 'm', 'P', '_', '\n', '\t', '\x00', '\x7f', '日', '\u{1F600}', '\uD800', 'e\u0301', '\r'];
	for (let round = 0; round < 2000; round++) {
		let input = '';
		const length = Math.floor(next() * 40);
		for (let i = 0; i < length; i++) {
			input += alphabet[Math.floor(next() * alphabet.length)]!;
		}

		const maxLength = Math.floor(next() * 30);
		const singleLine = next() < 0.5;
		const ascii = next() < 0.3;
		const out = sanitizeText(input, {maxLength, singleLine, ascii});
		assertInert(out, singleLine);
		assert.ok(displayWidth(out) <= maxLength, `width ${displayWidth(out)} > ${maxLength} for ${JSON.stringify(input)}`);
		// Sanitising twice changes nothing (no sequence survives to be re-interpreted).
		if (displayWidth(out) < maxLength) {
			assert.equal(sanitizeText(out, {singleLine, ascii}), out);
		}
	}
});

test('prettyJson: objects and arrays only, bounded, Python NaN tolerated', () => {
	assert.equal(prettyJson('{"a": 1, "b": [2, 3]}'), '{\n  "a": 1,\n  "b": [\n    2,\n    3\n  ]\n}');
	assert.equal(prettyJson('  [1]  '), '[\n  1\n]');
	assert.equal(prettyJson('0.0003'), null);
	assert.equal(prettyJson('"string"'), null);
	assert.equal(prettyJson('{broken'), null);
	assert.equal(prettyJson(''), null);
	assert.equal(prettyJson('{"x": NaN, "s": "NaN", "y": -Infinity}'), '{\n  "x": null,\n  "s": "NaN",\n  "y": null\n}');
	const deep = '['.repeat(100_000) + ']'.repeat(100_000);
	assert.equal(prettyJson(deep), null);
	assert.equal(prettyJson('[' + '1,'.repeat(3 * 1024 * 1024) + '1]'), null);
	// C0 controls in strings come back escaped by JSON.stringify; the caller sanitises the rest.
	const pretty = prettyJson('{"k": "a\\u001b[2Jb"}')!;
	assert.ok(!pretty.includes('\x1b'));
});
