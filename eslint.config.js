import tseslint from 'typescript-eslint';
import reactHooks from 'eslint-plugin-react-hooks';

export default tseslint.config(
	{ignores: ['build/**', 'node_modules/**', 'bench-data/**', '.cache/**']},
	{
		files: ['source/**/*.{ts,tsx}', 'test/**/*.{ts,tsx}'],
		extends: [tseslint.configs.recommended],
		plugins: {'react-hooks': reactHooks},
		rules: {
			'react-hooks/rules-of-hooks': 'error',
			'react-hooks/exhaustive-deps': 'error',
			'no-console': 'off',
			'@typescript-eslint/no-unused-vars': ['error', {argsIgnorePattern: '^_', varsIgnorePattern: '^_'}],
			'@typescript-eslint/no-non-null-assertion': 'off',
		},
	},
	{
		// The dashboard owns the terminal: nothing under these folders may print.
		files: ['source/components/**', 'source/state/**', 'source/app.tsx', 'source/engine/**', 'source/lora/**'],
		rules: {'no-console': 'error'},
	},
);
