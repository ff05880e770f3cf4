"""Stock kept in module-level state: try `getglobal shop.inventory ITEMS -x 2`."""

import threading

ITEMS = {
    "apple": {"name": "Apple", "price_cents": 40, "stock": 120, "tags": ["fruit", "fresh"]},
    "bread": {"name": "Sourdough bread", "price_cents": 450, "stock": 15, "tags": ["bakery"]},
    "coffee": {"name": "Coffee beans 1kg", "price_cents": 1800, "stock": 8, "tags": ["drinks", "beans"]},
    "tea": {"name": "Green tea", "price_cents": 650, "stock": 30, "tags": ["drinks"]},
}

_lock = threading.Lock()


class OutOfStock(Exception):
    pass


class Warehouse:
    """Counters kept as class attributes: try `getglobal shop.inventory Warehouse reserved`."""

    reserved = 0
    restocks = 0
    low_stock_threshold = 5
    recent_orders = []

    @classmethod
    def reserve(cls, sku, quantity):
        with _lock:
            item = ITEMS.get(sku)
            if item is None:
                raise KeyError(sku)
            if item["stock"] < quantity:
                raise OutOfStock("%s: %d left, %d wanted" % (sku, item["stock"], quantity))
            item["stock"] -= quantity
            cls.reserved += quantity
            cls.recent_orders.append((sku, quantity))
            del cls.recent_orders[:-10]
            if item["stock"] < cls.low_stock_threshold:
                item["stock"] += 50
                cls.restocks += 1
            return item["stock"]


def snapshot():
    with _lock:
        return {sku: dict(item) for sku, item in ITEMS.items()}
