import { Home } from '@/components/Home';

export default function SuccessPage() {
  return <Home returned="success" />;
}
