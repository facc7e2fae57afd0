import { Home } from '@/components/Home';

export default function CancelPage() {
  return <Home returned="cancel" />;
}
