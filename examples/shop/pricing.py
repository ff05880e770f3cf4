"""Prices with discounts: try `getglobal shop.pricing DISCOUNTS` or
`getglobal shop.pricing PriceBook -e "target.quote('coffee', 3)"`."""

from shop import inventory

DISCOUNTS = {"drinks": 0.10, "bakery": 0.05}
VAT_RATE = 0.2


class PriceBook:
    currency = "EUR"
    quotes_served = 0

    @classmethod
    def quote(cls, sku, quantity):
        item = inventory.ITEMS[sku]
        discount = max([DISCOUNTS.get(tag, 0.0) for tag in item["tags"]] or [0.0])
        net = item["price_cents"] * quantity * (1 - discount)
        cls.quotes_served += 1
        return {
            "sku": sku,
            "quantity": quantity,
            "net_cents": round(net),
            "gross_cents": round(net * (1 + VAT_RATE)),
            "currency": cls.currency,
        }
