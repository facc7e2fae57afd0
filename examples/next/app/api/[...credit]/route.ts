// The kit's routes by path after /api: POST /api/stripe/checkout/credits, POST /api/stripe/webhook, GET
// /api/stripe/checkout/session/:id, /api/credits/balance, /api/credits/transactions, /api/credits/pricing.
// A route file of its own (app/api/chat, app/api/session) wins over this catch-all.
import { getCredits } from '@/lib/credits';

export const runtime = 'nodejs'; // mongoose and the Stripe SDK need Node, not the Edge runtime
export const dynamic = 'force-dynamic'; // per-user answers: never cached

// `export const { GET, POST } = credits.routes` once the kit exists; it is made on the first request
// (lib/credits.ts says why), so each export hands the request over.
export const GET = (request: Request) => getCredits().routes.GET(request);
export const POST = (request: Request) => getCredits().routes.POST(request);
