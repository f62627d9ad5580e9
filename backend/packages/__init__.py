"""Service packages (保养套餐): prepaid bundles of store services bought with WeChat Pay."""
