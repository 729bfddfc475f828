export type Naming = 'camel' | 'snake' | 'kebab';
