// Strict, boring lint (architecture.md §12), plus the import rule that keeps the layers honest:
// journey (domain) never imports Fastify, BullMQ, ioredis or the HTTP layer; fhir imports only shared;
// nothing imports http except the app factory.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const restrict = (patterns) => ['error', { patterns }];

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'test/fhir-server/target/**',
      'coverage/**',
      '.careway/**',
      'bench/results/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/require-await': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    files: ['src/journey/**/*.ts'],
    rules: {
      'no-restricted-imports': restrict([
        {
          group: ['fastify', 'fastify-*', '@fastify/*', 'bullmq', 'ioredis', 'node:http', 'node:net'],
          message: 'journey is the framework-free domain',
        },
        {
          group: [
            '**/http/**',
            '**/queues/**',
            '**/hl7/**',
            '**/referrals/**',
            '**/scheduling/**',
            '**/reminders/**',
          ],
          message: 'journey may import only fhir and shared',
        },
      ]),
    },
  },
  {
    files: ['src/fhir/**/*.ts'],
    rules: {
      'no-restricted-imports': restrict([
        { group: ['fastify', '@fastify/*', 'bullmq', 'ioredis'], message: 'the FHIR port is framework-free' },
        {
          group: ['**/http/**', '**/queues/**', '**/journey/**', '**/hl7/**', '**/config/**'],
          message: 'fhir imports only shared',
        },
      ]),
    },
  },
  {
    files: ['src/**/*.ts'],
    ignores: ['src/app.ts', 'src/http/**', 'src/cli/**'],
    rules: {
      'no-restricted-imports': restrict([
        { group: ['**/http/**'], message: 'nothing imports http but the app factory' },
      ]),
    },
  },
  {
    files: ['test/**/*.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: "CallExpression[callee.property.name='only']", message: 'no .only in committed tests' },
      ],
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
    },
  },
  { files: ['**/*.mjs'], ...tseslint.configs.disableTypeChecked },
  // The care-team app (src/web): plain ES modules for the browser, served as they are (no build, no types),
  // so they are linted as JavaScript with the browser's globals; tsc does not see them (no allowJs).
  {
    files: ['src/web/**/*.js'],
    ...tseslint.configs.disableTypeChecked,
    languageOptions: {
      ...tseslint.configs.disableTypeChecked.languageOptions,
      sourceType: 'module',
      globals: Object.fromEntries(
        [
          'window',
          'document',
          'location',
          'history',
          'sessionStorage',
          'fetch',
          'URL',
          'URLSearchParams',
          'TextEncoder',
          'crypto',
          'atob',
          'btoa',
          'setInterval',
          'clearInterval',
          'setTimeout',
          'addEventListener',
          'removeEventListener',
          'dispatchEvent',
          'HashChangeEvent',
          'console',
        ].map((g) => [g, 'readonly']),
      ),
    },
  },
  {
    files: ['scripts/**/*.mjs', 'bin/**/*.mjs', 'docker/**/*.mjs', 'eslint.config.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
  },
);
