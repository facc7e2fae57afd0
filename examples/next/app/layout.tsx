import type { Metadata } from 'next';
import type { ReactNode } from 'react';
import 'credit-kit/client/styles.css';
import './globals.css';

export const metadata: Metadata = {
  title: 'credit-kit on Next.js',
  description: 'A metered, streaming chat paid with prepaid credits: credit-kit/fetch route handlers and credit-kit/client.',
  icons: { icon: 'data:,' },
};

export default function RootLayout({ children }: { children: ReactNode }) {
  return (
    <html lang="en">
      <body>{children}</body>
    </html>
  );
}
