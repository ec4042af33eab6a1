"""The push engine: behaviour events, rules, the pure send/hold/suppress decision, the outbox
worker and the delivery providers (in-app, Web Push, FCM, APNs, webhook)."""
